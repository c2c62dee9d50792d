package jobs

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startMarked starts a sleep marked as a process of the daemon of tag.
func startMarked(t *testing.T, tag string) (*process, chan error) {
	t.Helper()
	p, err := spawn(Spec{Path: "sleep", Args: []string{"600"}}, nil, tag)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	t.Cleanup(p.kill)
	return p, exited
}

// TestKillOrphans starts two processes marked as a dead daemon's and as a
// live one's, and checks only the first is judged an orphan and killed.
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
	orphan, orphanExited := startMarked(t, deadTag)
	live, _ := startMarked(t, liveTag)

	// A noded that starts meanwhile, of a test of another package, kills
	// the orphan too: then it is not this process's to find.
	killedElsewhere := func() bool {
		select {
		case err := <-orphanExited:
			orphanExited <- err
			return true
		default:
			return false
		}
	}
	pids, err := orphans()
	if err != nil {
		t.Fatal(err)
	}
	if (!slices.Contains(pids, orphan.pid) && !killedElsewhere()) || slices.Contains(pids, live.pid) {
		t.Errorf("orphans() = %v, want %d (marked %s) and not %d (marked %s, this process)", pids, orphan.pid, deadTag, live.pid, liveTag)
	}
	if n := KillOrphans(slog.New(slog.DiscardHandler)); n < 1 && !killedElsewhere() {
		t.Errorf("KillOrphans = %d, want at least the one orphan", n)
	}
	select {
	case <-orphanExited:
	case <-time.After(30 * time.Second):
		t.Fatal("the process of a dead daemon was not killed")
	}
}

// TestAliveZombie: a daemon that exited and was not yet reaped is a
// zombie, and a zombie does not run.
func TestAliveZombie(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("%d.%d", pid, st.start)
	if !alive(tag) {
		t.Errorf("alive(%s) of a running process = false, want true", tag)
	}
	// Killed and left unreaped: a zombie until Wait below.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err = readStat(pid); err != nil || st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still in state %c 30s after SIGKILL", pid, st.state)
		}
	}
	if err != nil {
		t.Fatalf("reading the zombie %d's stat: %v", pid, err)
	}
	if alive(tag) {
		t.Errorf("alive(%s) of a zombie = true, want false", tag)
	}
	cmd.Wait()
	if alive(tag) {
		t.Errorf("alive(%s) of a reaped process = true, want false", tag)
	}
}

// TestAliveReusedPID: a tag holds a PID and that process's start time;
// the PID running with another start time is another process that got
// the dead daemon's PID.
func TestAliveReusedPID(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		tag  string
		want bool
	}{
		{pid + "." + strconv.FormatUint(st.start, 10), true},
		{pid + "." + strconv.FormatUint(st.start+1, 10), false},
		{pid, true}, // a cgroup directory of an older noded: the PID alone
		{pid + ".", false},
		{"0.1", false},
		{"garbage", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := alive(tt.tag); got != tt.want {
			t.Errorf("alive(%q) = %v, want %v (this process: pid %s, start %d)", tt.tag, got, tt.want, pid, st.start)
		}
	}
}
