package jobs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// warmTable returns a table with a pool of n warm processes.
func warmTable(t *testing.T, n int) *Table {
	f := newFunctions(t)
	return newTable(t, Config{Resolver: f, Warm: n, WarmSpec: f.goProcess()})
}

// idlePIDs waits until the pool holds n greeted processes and returns
// their PIDs, leaving them in the pool.
func idlePIDs(t *testing.T, p *pool, n int) map[int]bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(p.idle) < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d processes, want %d", len(p.idle), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pids := map[int]bool{}
	var procs []*process
	for range n {
		proc := <-p.idle
		pids[proc.pid] = true
		procs = append(procs, proc)
	}
	for _, proc := range procs {
		p.idle <- proc
	}
	return pids
}

func TestWarmCallsUsePooledProcesses(t *testing.T) {
	t.Parallel()
	tb := warmTable(t, 2)
	warm := idlePIDs(t, tb.pool, 2)

	for i := range 2 {
		c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`"hi"`), Timeout: 30 * time.Second})
		if c.State != rpc.StateSucceeded || string(c.Result) != `"hi"` {
			t.Fatalf("warm echo %d = %s %s %v", i, c.State, c.Result, c.Error)
		}
		id, _ := rpc.ParseCallID(c.ID)
		if !warm[id.CPID] {
			t.Errorf("call %d ran in process %d, want one of the warm ones %v", i, id.CPID, warm)
		}
	}
	// Both were replaced in the background, by new processes.
	again := idlePIDs(t, tb.pool, 2)
	for pid := range again {
		if warm[pid] {
			t.Errorf("process %d served a call and is back in the pool", pid)
		}
	}
	// A request too large for the start to hand over itself goes in
	// through the supervisor, to a warm process all the same.
	big := json.RawMessage(`"` + strings.Repeat("x", 2*MaxInlineFeed) + `"`)
	c := start(t, tb, StartOptions{Fn: "echo", Args: big, Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded || !bytes.Equal(c.Result, big) {
		t.Fatalf("warm echo of %d bytes = %s, %d bytes, %v", len(big), c.State, len(c.Result), c.Error)
	}
	if id, _ := rpc.ParseCallID(c.ID); !again[id.CPID] {
		t.Errorf("the large call ran in process %d, want one of the warm ones %v", id.CPID, again)
	}
	// Executable functions stay cold and still work.
	dir := functionsDir(tb)
	os.WriteFile(dir+"/one", []byte("#!/bin/sh\necho 1\n"), 0o755)
	if c := start(t, tb, StartOptions{Fn: "one", Timeout: 30 * time.Second}); c.State != rpc.StateSucceeded {
		t.Errorf("executable function with a warm pool = %s %v", c.State, c.Error)
	}
}

func TestWarmProcessKilledWhileIdleIsSkipped(t *testing.T) {
	t.Parallel()
	tb := warmTable(t, 1)
	var victim int
	for pid := range idlePIDs(t, tb.pool, 1) {
		victim = pid
	}
	syscall.Kill(victim, syscall.SIGKILL)
	// Wait until it has exited, so take sees it dead.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		proc := <-tb.pool.idle
		dead := proc.exited()
		tb.pool.idle <- proc
		if dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed process %d never seen exited", victim)
		}
	}
	c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`1`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("echo after the warm process died = %s %v, want succeeded on a fresh process", c.State, c.Error)
	}
	if id, _ := rpc.ParseCallID(c.ID); id.CPID == victim {
		t.Fatalf("call ran in the dead process %d", victim)
	}
}

func TestShutdownKillsIdleWarmProcesses(t *testing.T) {
	t.Parallel()
	tb := warmTable(t, 3)
	pids := idlePIDs(t, tb.pool, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for pid := range pids {
		// discard reaped them: the PIDs are gone, not zombies.
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			waitGone(t, pid)
		}
	}
}

// TestWarmRefillWaitsForTheCall: the process that replaces one a call
// took is started once that call has ended and its process is reaped,
// not while it runs, where its spawn would compete with the call for the
// CPU. Calls made meanwhile start cold.
func TestWarmRefillWaitsForTheCall(t *testing.T) {
	t.Parallel()
	tb := warmTable(t, 1)
	idlePIDs(t, tb.pool, 1)
	tb.pool.delay = time.Hour // only the call's end lets the refill start
	long := start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":60}`), Timeout: 0})
	if id, _ := rpc.ParseCallID(long.ID); id.CPID <= 0 {
		t.Fatalf("sleep call ID %q", long.ID)
	}
	// Each of these takes a spawn's time: a refill started with the
	// long call would be in the pool for the next one.
	for i := range 3 {
		c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`1`), Timeout: 30 * time.Second})
		if c.State != rpc.StateSucceeded {
			t.Fatalf("echo %d = %s %v", i, c.State, c.Error)
		}
		if n := len(tb.pool.idle); n != 0 {
			t.Fatalf("after echo %d, with the call that took the warm process still running, the pool holds %d processes, want 0", i, n)
		}
	}
	if _, err := tb.Cancel(context.Background(), long.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	idlePIDs(t, tb.pool, 1) // refilled once the call ended
}

// TestRefillTokenDueFromQueueing: a replacement's wait for its call runs
// from when it was asked for, not from when the refiller comes to it, so
// a burst of long calls that drained the pool is refilled without a
// delay per process.
func TestRefillTokenDueFromQueueing(t *testing.T) {
	t.Parallel()
	p := &pool{delay: time.Hour, stop: make(chan struct{})}
	tok := refillToken{after: make(chan struct{}), by: time.Now().Add(-time.Second)} // queued long ago, its call still running
	done := make(chan bool, 1)
	go func() { done <- p.waitFor(tok) }()
	select {
	case ok := <-done:
		if !ok {
			t.Error("waitFor = false for a running pool, want true")
		}
	case <-time.After(30 * time.Second):
		close(p.stop)
		t.Fatal("waitFor still waits for a token that came due a second before it was called")
	}
}

// TestWarmStartSaysWhyTheHelloFailed: a warm process that exits
// before its hello is a protocol_error that says so, for the log line
// of the refiller, not a bare EOF.
func TestWarmStartSaysWhyTheHelloFailed(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "fn")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tb := newTable(t, Config{})
	p := &pool{spec: Spec{Path: script, Protocol: ProtocolFramed}, spawn: tb.spawn}
	proc, err := p.start()
	if proc != nil {
		proc.discard()
	}
	var rerr *rpc.Error
	if !errors.As(err, &rerr) || rerr.Kind != rpc.KindProtocolError || !strings.Contains(rerr.Message, "exited before its protocol hello") {
		t.Errorf("starting a warm process that exits at once: %v, want a protocol_error saying it exited before its hello", err)
	}
}
