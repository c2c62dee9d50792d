package rpc

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CallID is a parsed function-call ID, "${ppid}:${cpid}:${time}:${random}"
// as Ganeti's design has it: the daemon's PID, the function process's PID,
// the Unix time of the start with microseconds, and 64 random bits. PIDs
// are recycled; the time and the random part make the ID unique anyway,
// and the time tells a later daemon that an ID belongs to an earlier one.
type CallID struct {
	PPID   int
	CPID   int
	Time   time.Time
	Random uint64
}

// NewCallID returns the ID of a function process cpid started by the
// daemon ppid at t.
func NewCallID(ppid, cpid int, t time.Time) CallID {
	var b [8]byte
	rand.Read(b[:]) // never fails on Linux (crypto/rand documents it)
	return CallID{PPID: ppid, CPID: cpid, Time: t, Random: binary.LittleEndian.Uint64(b[:])}
}

// String formats the ID for the wire.
func (id CallID) String() string {
	us := id.Time.UnixMicro()
	return fmt.Sprintf("%d:%d:%d.%06d:%016x", id.PPID, id.CPID, us/1e6, us%1e6, id.Random)
}

// maxCallIDSeconds is the end of the year 9999, the last time a call ID
// can carry.
const maxCallIDSeconds = 253402300799

// ParseCallID parses a function-call ID; a malformed one is a bad_request.
func ParseCallID(s string) (CallID, error) {
	bad := func(why string) (CallID, error) {
		return CallID{}, Errorf(KindBadRequest, "malformed function-call ID %q: %s (want ppid:cpid:time:random)", s, why)
	}
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return bad("not four fields")
	}
	ppid, err := strconv.Atoi(parts[0])
	if err != nil || ppid <= 0 {
		return bad("bad ppid")
	}
	cpid, err := strconv.Atoi(parts[1])
	if err != nil || cpid <= 0 {
		return bad("bad cpid")
	}
	secs, frac, ok := strings.Cut(parts[2], ".")
	if !ok || len(frac) != 6 {
		return bad("bad time")
	}
	sec, err1 := strconv.ParseInt(secs, 10, 64)
	micro, err2 := strconv.ParseInt(frac, 10, 64)
	// Past maxCallIDSeconds the time in microseconds would overflow
	// (found by FuzzParseCallID); no daemon issues such an ID.
	if err1 != nil || err2 != nil || sec < 0 || sec > maxCallIDSeconds || micro < 0 {
		return bad("bad time")
	}
	if len(parts[3]) != 16 {
		return bad("bad random part")
	}
	random, err := strconv.ParseUint(parts[3], 16, 64)
	if err != nil {
		return bad("bad random part")
	}
	return CallID{PPID: ppid, CPID: cpid, Time: time.UnixMicro(sec*1e6 + micro), Random: random}, nil
}
