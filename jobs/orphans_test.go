package jobs

import (
	"log/slog"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/noderpc/noderpc/backend"
)

// TestKillOrphans starts two processes marked as a dead daemon's and as a
// live one's, and checks only the first is killed.
func TestKillOrphans(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadTag := strconv.Itoa(gone.Process.Pid) + ".1"
	liveTag, err := daemonTag()
	if err != nil {
		t.Fatal(err)
	}
	start := func(tag string) (*process, chan error) {
		p, err := spawn(backend.Spec{Path: "sleep", Args: []string{"600"}}, nil, tag)
		if err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- p.cmd.Wait() }()
		t.Cleanup(p.kill)
		return p, exited
	}
	_, orphanExited := start(deadTag)
	_, liveExited := start(liveTag)

	if n := killOrphans(slog.New(slog.DiscardHandler)); n < 1 {
		t.Errorf("killOrphans = %d, want at least the one orphan", n)
	}
	select {
	case <-orphanExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process of a dead daemon was not killed")
	}
	// A SIGKILL sent with the orphan's would have landed by now; give it
	// a generous moment to show anyway.
	select {
	case err := <-liveExited:
		t.Fatalf("the process of a live daemon was killed: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if alive(deadTag) || !alive(liveTag) || alive("garbage") {
		t.Errorf("alive(%s)=%v alive(%s)=%v alive(garbage)=%v, want false true false",
			deadTag, alive(deadTag), liveTag, alive(liveTag), alive("garbage"))
	}
}
