package nodetest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// DialFrom opens a TCP connection to addr from the local IP from (empty:
// any), closed when the test ends. Loopback holds all of 127.0.0.0/8, so
// a test can be many clients of a node's per-address limits.
func DialFrom(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s from %q: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ReadAnswer reads one HTTP answer from c, waiting at most within, and
// returns its status and the kind of its error body ("" for none).
func ReadAnswer(t testing.TB, c net.Conn, within time.Duration) (int, rpc.Kind) {
	t.Helper()
	status, e, _ := ReadAnswerBody(t, c, within)
	if e == nil {
		return status, ""
	}
	return status, e.Kind
}

// ReadAnswerBody reads one HTTP answer from c, waiting at most within,
// and returns its status, its error if its body is an error object, and
// its body.
func ReadAnswerBody(t testing.TB, c net.Conn, within time.Duration) (int, *rpc.Error, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading an answer on %s: %v", c.LocalAddr(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var er rpc.ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != nil {
		return resp.StatusCode, er.Error, body
	}
	return resp.StatusCode, nil, body
}

// DeadAddrs returns n distinct loopback addresses nothing listens on:
// ports that were just open, so connecting to them is refused at once.
// All n are held until each is chosen; one at a time, the kernel may
// hand the same port out twice.
func DeadAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := freePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// DeadAddr is one of DeadAddrs.
func DeadAddr(t testing.TB) string { return DeadAddrs(t, 1)[0] }
