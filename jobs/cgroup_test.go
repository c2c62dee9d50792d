package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
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
	c := start(t, tb, StartOptions{Fn: "daemonize", Timeout: 30 * time.Second})
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
	c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`1`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("echo = %s %v", c.State, c.Error)
	}
	if _, err := New(Config{Resolver: tb.cfg.Resolver, Containment: "jail"}); err == nil {
		t.Errorf("New with an unknown containment succeeded")
	}
}

// TestStaleCgroupsOfADeadDaemonAreKilled leaves a process in the cgroup
// of a daemon that no longer runs, one whose PID now belongs to another
// process (this one), and checks KillOrphans kills it and removes its
// cgroup, and leaves the cgroups of a live table alone.
func TestStaleCgroupsOfADeadDaemonAreKilled(t *testing.T) {
	live := newTable(t, Config{})
	requireCgroups(t, live)
	base, err := cgroupsBase()
	if err != nil {
		t.Fatal(err)
	}
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadTag := fmt.Sprintf("%d.%d", os.Getpid(), st.start+1)
	stale := &cgroups{dir: filepath.Join(base, deadTag+"-test")}
	if err := os.Mkdir(stale.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cg, err := stale.create()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := spawn(Spec{Path: "sleep", Args: []string{"600"}}, cg, "")
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.cmd.Wait() }()

	var logged nodetest.SyncBuffer
	if n := KillOrphans(slog.New(slog.NewTextHandler(&logged, nil))); n < 1 {
		t.Errorf("KillOrphans = %d, want at least the process in the stale cgroup", n)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		orphan.kill()
		t.Fatal("the process in a dead daemon's cgroup was not killed")
	}
	// One call's cgroup, with its control files around it, is one call.
	want := fmt.Sprintf("cgroup=%s calls=1 pids=[%d]", stale.dir, orphan.pid)
	if !strings.Contains(logged.String(), want) {
		t.Errorf("KillOrphans logged:\n%s\nwant a line with %q", logged.String(), want)
	}
	if _, err := os.Stat(stale.dir); !os.IsNotExist(err) {
		t.Errorf("stale cgroup directory %s still exists (%v)", stale.dir, err)
	}
	if st := orphan.cmd.ProcessState; st == nil || !strings.Contains(st.String(), "killed") {
		t.Errorf("orphan ended with %v, want killed", st)
	}
	if _, err := os.Stat(live.cgroups.dir); err != nil {
		t.Errorf("the live table's cgroup directory: %v, want it kept", err)
	}
	if c := start(t, live, StartOptions{Fn: "echo", Timeout: 30 * time.Second}); c.State != rpc.StateSucceeded || live.Containment() != ContainCgroup {
		t.Errorf("echo in the live table after KillOrphans = %s %v, containment %s; want succeeded in its cgroup", c.State, c.Error, live.Containment())
	}
}

func TestParseContainment(t *testing.T) {
	tests := []struct {
		in      string
		want    Containment
		wantErr bool
	}{
		{"", "", true}, // Config's zero value is auto, a flag's is a mistake
		{"auto", ContainAuto, false},
		{"cgroup", ContainCgroup, false},
		{"process-group", ContainProcessGroup, false},
		{"jail", "", true},
		{"Cgroup", "", true},
	}
	for _, tt := range tests {
		got, err := ParseContainment(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseContainment(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
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
	c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`"still runs"`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded || string(c.Result) != `"still runs"` {
		t.Fatalf("echo with cgroups refused = %s %s %v, want it to succeed", c.State, c.Result, c.Error)
	}
	if got := tb.Containment(); got != ContainProcessGroup {
		t.Errorf("Containment() after the kernel refused a cgroup = %s, want process-group", got)
	}
}

// TestStrictCgroupRefusalFailsTheCall: under ContainCgroup the operator
// asked that no call run outside a cgroup of its own, so a start the
// kernel refuses a cgroup fails, typed, instead of running contained by
// its process group only; and the next start tries a cgroup again.
func TestStrictCgroupRefusalFailsTheCall(t *testing.T) {
	t.Parallel()
	probe := newTable(t, Config{})
	requireCgroups(t, probe)
	tb := newTable(t, Config{Containment: ContainCgroup})
	real := tb.cgroups.dir
	tb.cgroups.dir = t.TempDir() // not a cgroup: the kernel refuses it

	_, err := tb.Start(context.Background(), StartOptions{Fn: "echo", Args: json.RawMessage(`1`), Timeout: 30 * time.Second})

	var rerr *rpc.Error
	if !errors.As(err, &rerr) || rerr.Kind != rpc.KindInternal || !strings.Contains(rerr.Message, "containment is cgroup") {
		t.Fatalf("Start under containment cgroup with cgroups refused = %v, want an internal error saying the call had no cgroup", err)
	}
	if got := tb.Containment(); got != ContainCgroup {
		t.Errorf("Containment() = %s after a refused start in strict mode, want cgroup (there is no fallback)", got)
	}
	tb.cgroups.dir = real
	c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`2`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded {
		t.Errorf("the next start, with cgroups working = %s %v, want it to succeed", c.State, c.Error)
	}
}

func init() {
	// cgroup returns the cgroup its process runs in; with args true it
	// also leaves a grandchild there, in a session of its own.
	extraFunctions["cgroup"] = func(ctx context.Context, args json.RawMessage) (any, error) {
		data, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, err
		}
		var res struct {
			Cgroup string `json:"cgroup"`
			Left   int    `json:"left,omitempty"`
		}
		for line := range strings.Lines(string(data)) {
			if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
				res.Cgroup = p
			}
		}
		if string(args) == `"nest"` {
			own, err := ownCgroup()
			if err != nil {
				return nil, err
			}
			if err := os.Mkdir(filepath.Join(own, "nested"), 0o755); err != nil {
				return nil, err
			}
		}
		if string(args) == "true" {
			cmd := exec.Command("sleep", "600")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			res.Left = cmd.Process.Pid
		}
		return res, nil
	}
}

// idleCgroups is how many empty cgroups tb keeps for reuse.
func idleCgroups(tb *Table) int {
	tb.cgroups.mu.Lock()
	defer tb.cgroups.mu.Unlock()
	return len(tb.cgroups.idle)
}

// waitCgroupRemoved polls until the call cgroup named by cgroup (a path
// as /proc/PID/cgroup gives it) is gone; why says which cgroup it is.
func waitCgroupRemoved(t *testing.T, tb *Table, cgroup, why string) {
	t.Helper()
	path := filepath.Join(tb.cgroups.dir, filepath.Base(cgroup))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup %s %s still exists after its call (%d idle)", path, why, idleCgroups(tb))
		}
	}
}

// shutdownRemovesCgroups shuts tb down and checks that its calls'
// cgroup directory, idle cgroups and all, is gone.
func shutdownRemovesCgroups(t *testing.T, tb *Table) {
	t.Helper()
	dir := tb.cgroups.dir
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Shutdown left the calls' cgroup directory %s: %v", dir, err)
	}
}

// TestCgroupReused: the cgroup of a call that left nothing behind is
// kept and given to the next call; one that a leftover process still
// held when the call ended is killed and removed, never reused; Shutdown
// removes the kept ones with the table's directory.
func TestCgroupReused(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	type where struct {
		Cgroup string `json:"cgroup"`
		Left   int    `json:"left"`
	}
	call := func(leave bool) where {
		t.Helper()
		c := start(t, tb, StartOptions{Fn: "cgroup", Args: json.RawMessage(strconv.FormatBool(leave)), Timeout: 30 * time.Second})
		var w where
		if c.State != rpc.StateSucceeded || json.Unmarshal(c.Result, &w) != nil || w.Cgroup == "" {
			t.Fatalf("cgroup = %s %s %v", c.State, c.Result, c.Error)
		}
		return w
	}
	waitIdle := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); idleCgroups(tb) != n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d idle cgroups, want %d", idleCgroups(tb), n)
			}
		}
	}
	first := call(false)
	waitIdle(1)
	if second := call(false); second.Cgroup != first.Cgroup {
		t.Errorf("second call ran in %s, want the first's idle cgroup %s", second.Cgroup, first.Cgroup)
	}
	waitIdle(1)

	left := call(true) // takes the idle cgroup and leaves a process in it
	if left.Cgroup != first.Cgroup {
		t.Errorf("call ran in %s, want the idle cgroup %s", left.Cgroup, first.Cgroup)
	}
	waitGone(t, left.Left)
	waitCgroupRemoved(t, tb, left.Cgroup, "of a call that left a process behind")
	if n := idleCgroups(tb); n != 0 {
		t.Errorf("%d idle cgroups after a call that left a process behind, want 0", n)
	}
	if next := call(false); next.Cgroup == left.Cgroup {
		t.Errorf("a cgroup that held a leftover process was reused")
	}
	waitIdle(1)

	shutdownRemovesCgroups(t, tb)
}

// TestLateKillSparesReusedCgroup: a kill that comes after the call ended
// (a stop racing the end) must not touch its cgroup, which may already
// be another call's.
func TestLateKillSparesReusedCgroup(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	g := createCgroup(t, tb)
	if err := g.release(); err != nil || idleCgroups(tb) != 1 {
		t.Fatalf("release of an empty cgroup = %v, %d idle; want it kept", err, idleCgroups(tb))
	}
	g.kill()
	c := start(t, tb, StartOptions{Fn: "cgroup", Args: json.RawMessage(`false`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("call in a cgroup killed after its release = %s %v, want succeeded", c.State, c.Error)
	}
	if !strings.Contains(string(c.Result), filepath.Base(g.path)) {
		t.Errorf("call ran in %s, want the idle cgroup %s", c.Result, g.path)
	}
}

// TestCgroupWithNestedCgroupNotReused: a function that makes a cgroup in
// its own leaves it to noded, which removes both rather than give the
// next call a cgroup with another's leftovers, and Shutdown leaves
// nothing behind.
func TestCgroupWithNestedCgroupNotReused(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	c := start(t, tb, StartOptions{Fn: "cgroup", Args: json.RawMessage(`"nest"`), Timeout: 30 * time.Second})
	var w struct {
		Cgroup string `json:"cgroup"`
	}
	if c.State != rpc.StateSucceeded || json.Unmarshal(c.Result, &w) != nil {
		t.Fatalf("cgroup nest = %s %s %v", c.State, c.Result, c.Error)
	}
	waitCgroupRemoved(t, tb, w.Cgroup, "with a nested cgroup")
	if n := idleCgroups(tb); n != 0 {
		t.Errorf("%d idle cgroups after a call that nested one, want 0", n)
	}
	shutdownRemovesCgroups(t, tb)
}

// TestCgroupDescriptorsNotInherited: noded keeps its cgroups open, the
// idle ones and the one a process starts in; a function process started
// in a reused cgroup holds none of those descriptors.
func TestCgroupDescriptorsNotInherited(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	// Two cgroups released empty, with their control files read, as at
	// the end of two calls: both idle, open.
	released := releaseEmpty(t, tb, 2)
	if n := idleCgroups(tb); n != 2 {
		t.Fatalf("%d idle cgroups after releasing two empty ones, want 2", n)
	}
	g := createCgroup(t, tb)
	if g.path != released[1].path || g.events < 0 || g.stat < 0 {
		t.Fatalf("create gave %+v, want the idle cgroup %s with its control files open", g.cgroupFiles, released[1].path)
	}
	proc, err := spawn(Spec{Path: "sleep", Args: []string{"600"}}, g, "")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.discard()

	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", proc.pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(own)), "/"+filepath.Base(g.path)) {
		t.Errorf("the process runs in %q, want the reused cgroup %s", own, g.path)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", proc.pid)
	if open := openUnder(t, fdDir, tb.cgroups.dir); len(open) > 0 {
		t.Errorf("the function process holds descriptors of noded's cgroups: %v", open)
	}
	if entries, err := os.ReadDir(fdDir); err != nil || len(entries) < 3 {
		t.Errorf("the function process holds %d descriptors (%v), want at least its stdio: is %s its table?", len(entries), err, fdDir)
	}
}

// TestCgroupDescriptorsClosed: noded holds a cgroup open only while the
// cgroup exists. Whichever way a cgroup ends (a call that leaves nothing,
// one that leaves a process, one that nests a cgroup, a start that
// fails, more released at once than are kept idle, warm processes
// discarded at Shutdown, the idle ones at Shutdown) no descriptor of it
// is left open.
func TestCgroupDescriptorsClosed(t *testing.T) {
	t.Parallel()
	f := newFunctions(t)
	tb := newTable(t, Config{Resolver: f, Warm: 2, WarmSpec: f.goProcess()})
	requireCgroups(t, tb)
	dir := tb.cgroups.dir
	idlePIDs(t, tb.pool, 2)
	for _, args := range []string{`false`, `true`, `"nest"`, `false`, `false`} {
		c := start(t, tb, StartOptions{Fn: "cgroup", Args: json.RawMessage(args), Timeout: 30 * time.Second})
		if c.State != rpc.StateSucceeded {
			t.Fatalf("cgroup %s = %s %v", args, c.State, c.Error)
		}
	}
	if _, err := tb.spawn(Spec{Path: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("a start of a missing program succeeded")
	}
	releaseEmpty(t, tb, maxIdleCgroups+2)
	// A call is answered at its result frame, before its process is
	// reaped and its cgroup released, and the pool refills after the
	// calls took its processes: the bound holds once both have settled.
	bound := 3 * (maxIdleCgroups + 2)
	deadline := time.Now().Add(10 * time.Second)
	for open := openUnder(t, "/proc/self/fd", dir); len(open) > bound; open = openUnder(t, "/proc/self/fd", dir) {
		if time.Now().After(deadline) {
			t.Fatalf("with %d idle cgroups and 2 warm processes, %d descriptors are open in %s: %v", maxIdleCgroups, len(open), dir, open)
		}
		time.Sleep(5 * time.Millisecond)
	}
	shutdownRemovesCgroups(t, tb)
	if open := openUnder(t, "/proc/self/fd", dir); len(open) > 0 {
		t.Errorf("after Shutdown, descriptors of removed cgroups are still open: %v", open)
	}
}

// openUnder returns the descriptors listed in fdDir (/proc/PID/fd) of
// files under dir, as "fd -> path".
func openUnder(t *testing.T, fdDir, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			open = append(open, e.Name()+" -> "+target)
		}
	}
	return open
}

// createCgroup takes a cgroup of tb for a call, idle or new.
func createCgroup(t *testing.T, tb *Table) *cgroup {
	t.Helper()
	g, err := tb.cgroups.create()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// releaseEmpty makes n cgroups of tb and releases them empty, as at the
// end of n calls that left nothing, and returns them.
func releaseEmpty(t *testing.T, tb *Table, n int) []*cgroup {
	t.Helper()
	made := make([]*cgroup, n)
	for i := range made {
		g := createCgroup(t, tb)
		made[i] = g
	}
	for _, g := range made {
		if err := g.release(); err != nil {
			t.Fatal(err)
		}
	}
	return made
}

// TestCgroupPopulatedReadsAfresh: populated reads cgroup.events through
// the one descriptor the cgroup keeps open, with pread at offset 0, and
// each read is the kernel's answer now, not the first read's again:
// empty, then holding a process, then empty once it is reaped.
func TestCgroupPopulatedReadsAfresh(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	g := createCgroup(t, tb)
	if g.populated() {
		t.Fatal("a new cgroup reads populated")
	}
	events := g.events
	proc, err := spawn(Spec{Path: "sleep", Args: []string{"600"}}, g, "")
	if err != nil {
		t.Fatal(err)
	}
	if !g.populated() {
		t.Error("a cgroup with a process in it reads empty")
	}
	// Killed by its PID alone: a kill of the cgroup would write
	// cgroup.kill and have the cgroup removed, not read again.
	syscall.Kill(proc.pid, syscall.SIGKILL)
	proc.cmd.Wait()
	proc.stdin.Close()
	proc.stdout.Close()
	proc.stderr.Close()
	if g.populated() {
		t.Error("a cgroup whose process is reaped reads populated")
	}
	if g.events != events {
		t.Errorf("cgroup.events was opened again (descriptor %d, then %d), want it read through the one descriptor", events, g.events)
	}
	if err := g.release(); err != nil {
		t.Error(err)
	}
}

// TestIdleCgroupRemovedElsewhere: an idle cgroup removed while it waits
// (an operator cleaning up, another tool) is not the kernel refusing
// cgroups: the next call runs in a cgroup of its own, under either
// containment, and calls stay contained by cgroup.
func TestIdleCgroupRemovedElsewhere(t *testing.T) {
	t.Parallel()
	for _, contain := range []Containment{ContainAuto, ContainCgroup} {
		tb := newTable(t, Config{Containment: contain})
		requireCgroups(t, tb)
		g := releaseEmpty(t, tb, 1)[0]
		if n := idleCgroups(tb); n != 1 {
			t.Fatalf("%d idle cgroups after releasing an empty one, want it kept", n)
		}
		if err := os.Remove(g.path); err != nil {
			t.Fatal(err)
		}
		c, err := tb.Start(context.Background(), StartOptions{Fn: "cgroup", Args: json.RawMessage(`false`), Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("containment %s: a start after an idle cgroup was removed: %v", contain, err)
		}
		if c.State != rpc.StateSucceeded || !strings.Contains(string(c.Result), filepath.Base(tb.cgroups.dir)+"/") {
			t.Errorf("containment %s: the call after an idle cgroup was removed = %s %s %v, want it run in a cgroup of its own", contain, c.State, c.Result, c.Error)
		}
		if got := tb.Containment(); got != ContainCgroup {
			t.Errorf("containment %s: Containment() = %s after an idle cgroup was removed, want cgroup", contain, got)
		}
	}
}
