package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func skipWithoutProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
}

func TestProcStatSelf(t *testing.T) {
	skipWithoutProc(t)
	ppid, state, ok := ProcStat(os.Getpid())
	if !ok {
		t.Fatalf("ProcStat(%d) not ok", os.Getpid())
	}
	if ppid != os.Getppid() {
		t.Errorf("ProcStat(%d) ppid = %d, want %d", os.Getpid(), ppid, os.Getppid())
	}
	if state == 'Z' || state == 'X' {
		t.Errorf("ProcStat(%d) state = %c for the running test", os.Getpid(), state)
	}
	if !Running(os.Getpid()) {
		t.Errorf("Running(%d) = false for the running test", os.Getpid())
	}
	if _, _, ok := ProcStat(-1); ok {
		t.Errorf("ProcStat(-1) ok")
	}
}

// TestProcessesWithEnv starts a child with an environment entry of its own
// and finds it by that entry, then checks that it is no longer listed or
// running once it is a zombie, and gone from /proc once reaped. The child
// runs under a name with spaces and parentheses, which /proc/PID/stat
// shows unquoted.
func TestProcessesWithEnv(t *testing.T) {
	skipWithoutProc(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	odd := filepath.Join(t.TempDir(), "sl (e) ep")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	kv := "NODETEST_PROC_TEST=" + RandomHex(8)
	cmd := exec.Command(odd, "60")
	cmd.Env = append(os.Environ(), kv)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	// Start returns once the child's execve has closed its close-on-exec
	// descriptors, which the kernel does before it lays out the new
	// environment: /proc/PID/environ can read empty for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		got := ProcessesWithEnv(kv)
		if slices.Equal(got, []int{pid}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ProcessesWithEnv(%q) = %v, want [%d]", kv, got, pid)
		}
	}
	if !HasEnv(pid, kv) || HasEnv(pid, kv+"x") || HasEnv(pid, "NODETEST_PROC_TEST") {
		t.Errorf("HasEnv(%d, ...) matches other than the exact entry %q", pid, kv)
	}
	if ppid, _, ok := ProcStat(pid); !ok || ppid != os.Getpid() {
		t.Errorf("ProcStat(%d) = ppid %d, ok %v; want ppid %d", pid, ppid, ok, os.Getpid())
	}
	if !Running(pid) {
		t.Errorf("Running(%d) = false for a sleeping child", pid)
	}

	// Killed and not yet waited for, the child is a zombie: still in
	// /proc, but not running.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, state, ok := ProcStat(pid); ok && state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d not a zombie 10s after SIGKILL: %s", pid, Describe(pid))
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: another process's end sends no event
	}
	if Running(pid) {
		t.Errorf("Running(%d) = true for a zombie", pid)
	}
	if got := ProcessesWithEnv(kv); len(got) != 0 {
		t.Errorf("ProcessesWithEnv(%q) = %v for a zombie, want none", kv, got)
	}

	cmd.Wait()
	reaped = true
	if _, _, ok := ProcStat(pid); ok {
		t.Errorf("ProcStat(%d) ok after the child was reaped", pid)
	}
}
