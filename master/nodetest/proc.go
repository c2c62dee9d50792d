package nodetest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The process-table helpers below read Linux's /proc. Tests of real
// processes use them to find what a node started and to check that it is
// gone.

// ProcStat reads the parent and the state of process pid from
// /proc/PID/stat. The state is the kernel's one-letter code ('R', 'S',
// 'Z', ...); ok is false if pid is not in /proc (it has exited and been
// reaped) or its stat cannot be read.
func ProcStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may hold spaces; the fields
	// after its closing parenthesis are "state ppid ...".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// Running reports whether pid is a running process: present in /proc and
// not a zombie (state Z) or dead (state X). A zombie has exited; only its
// parent has not reaped it yet.
func Running(pid int) bool {
	_, state, ok := ProcStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// AwaitGone polls until process pid is no longer running (see
// [Running]) or d has passed, and reports whether it is gone. Another
// process's end sends no event to wait on.
func AwaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for Running(pid) {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// HasEnv reports whether the environment of process pid holds exactly the
// entry kv, in the form "KEY=value".
func HasEnv(pid int, kv string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	want := []byte(kv)
	for e := range bytes.SplitSeq(env, []byte{0}) {
		if bytes.Equal(e, want) {
			return true
		}
	}
	return false
}

// ProcessesWithEnv lists the running processes (see [Running]) other than
// the calling one whose environment holds exactly the entry kv, in the
// form "KEY=value". A process hands its environment down to its children,
// so an entry unique to a test finds everything the test started,
// grandchildren that left their process group included.
func ProcessesWithEnv(kv string) []int {
	var pids []int
	for _, pid := range allPIDs() {
		if pid != os.Getpid() && HasEnv(pid, kv) && Running(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allPIDs lists the processes in /proc, zombies included.
func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Describe names process pid for a failure message: its PID, parent,
// state and command line, as "pid 42 (ppid 1, state S): sleep 60", or
// "pid 42 (gone)" once it is no longer in /proc.
func Describe(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	ppid, state, ok := ProcStat(pid)
	if !ok {
		return fmt.Sprintf("pid %d (gone)", pid)
	}
	return fmt.Sprintf("pid %d (ppid %d, state %c): %s", pid, ppid, state,
		strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
}

// RandomHex returns n random bytes in hexadecimal (2n characters), for
// names that must not collide with another test's or another run's.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Sanitize replaces every character of name but an ASCII letter or digit
// with '_', so that a test's name (which may hold '/', spaces and
// punctuation) can be used in a file name or an environment value.
func Sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
}

// ProcStatus is what tests read of /proc/PID/status.
type ProcStatus struct {
	VmHWM   int64 // peak resident set size, in bytes
	VmRSS   int64 // resident set size, in bytes
	Threads int
}

// ReadStatus reads the memory and threads of process pid from
// /proc/PID/status.
func ReadStatus(pid int) (ProcStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStatus{}, err
	}
	var s ProcStatus
	found := 0
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			s.VmHWM, found = v<<10, found+1 // in kB
		case "VmRSS:":
			s.VmRSS, found = v<<10, found+1
		case "Threads:":
			s.Threads, found = int(v), found+1
		}
	}
	if found != 3 {
		return s, fmt.Errorf("/proc/%d/status lacks VmHWM, VmRSS or Threads:\n%s", pid, b)
	}
	return s, nil
}

// VmHWM returns the peak resident set size of the latest incarnation, in
// bytes; the test fails if it cannot be read. Under the race detector it
// is several times what it is without: a test that bounds it starts the
// node with Options.NoRace.
func (n *Node) VmHWM(t testing.TB) int64 {
	t.Helper()
	s, err := ReadStatus(n.PID())
	if err != nil {
		t.Fatal(err)
	}
	return s.VmHWM
}
