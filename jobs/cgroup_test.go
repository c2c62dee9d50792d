package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/rpc"
)

func init() {
	// daemonize leaves a grandchild in a session of its own, out of the
	// call's process group, and returns at once.
	extraFunctions["daemonize"] = func(ctx context.Context, args json.RawMessage) (any, error) {
		cmd := exec.Command("sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd.Process.Pid, nil
	}
}

func requireCgroups(t *testing.T, tb *Table) {
	t.Helper()
	if tb.Containment() != ContainCgroup {
		t.Skip("cgroup v2 is not writable here; calls are contained by process groups only")
	}
}

func TestCgroupKillsDaemonizedGrandchild(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	c := start(t, tb, rpc.StartRequest{FnName: "daemonize", Timeout: 30})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("daemonize = %s %v", c.State, c.Error)
	}
	pid, err := strconv.Atoi(string(c.Result))
	if err != nil {
		t.Fatalf("daemonize result %s is not a PID", c.Result)
	}
	waitGone(t, pid)
}

func TestProcessGroupContainment(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{Containment: ContainProcessGroup})
	if got := tb.Containment(); got != ContainProcessGroup {
		t.Fatalf("Containment() = %s, want process-group", got)
	}
	c := start(t, tb, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 30})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("echo = %s %v", c.State, c.Error)
	}
	if _, err := New(Config{Resolver: tb.cfg.Resolver, Containment: "jail"}); err == nil {
		t.Errorf("New with an unknown containment succeeded")
	}
}

// TestStaleCgroupsOfADeadDaemonAreKilled leaves a process in the cgroup
// of a daemon that no longer runs and checks the next table kills it.
func TestStaleCgroupsOfADeadDaemonAreKilled(t *testing.T) {
	own, err := ownCgroup()
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	base := filepath.Join(own, callCgroupsDir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Skipf("cgroup v2 not writable: %v", err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := &cgroups{dir: filepath.Join(base, strconv.Itoa(gone.Process.Pid)+"-test")}
	if err := os.Mkdir(stale.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cg, err := stale.create()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := spawn(backend.Spec{Path: "sleep", Args: []string{"600"}}, cg, "")
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.cmd.Wait() }()

	newTable(t, Config{})
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		orphan.kill()
		t.Fatal("the process in a dead daemon's cgroup was not killed")
	}
	if _, err := os.Stat(stale.dir); !os.IsNotExist(err) {
		t.Errorf("stale cgroup directory %s still exists (%v)", stale.dir, err)
	}
	if st := orphan.cmd.ProcessState; st == nil || !strings.Contains(st.String(), "killed") {
		t.Errorf("orphan ended with %v, want killed", st)
	}
}

// TestCgroupRefusedFallsBack points the table's cgroups at a directory
// that is not a cgroup, so the kernel refuses to start a process in one,
// and checks calls still run, contained by their process group.
func TestCgroupRefusedFallsBack(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	real := tb.cgroups.dir
	tb.cgroups.dir = t.TempDir()
	defer func() { tb.cgroups.dir = real }()
	c := start(t, tb, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`"still runs"`), Timeout: 30})
	if c.State != rpc.StateSucceeded || string(c.Result) != `"still runs"` {
		t.Fatalf("echo with cgroups refused = %s %s %v, want it to succeed", c.State, c.Result, c.Error)
	}
	if got := tb.Containment(); got != ContainProcessGroup {
		t.Errorf("Containment() after the kernel refused a cgroup = %s, want process-group", got)
	}
}
