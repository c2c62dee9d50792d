package backend

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestNameProcessFromAnyThread: nameProcess names the process as ps and
// top show it (the name of its first thread, /proc/PID/comm) whichever
// thread it runs on: after init, Go runs the main goroutine, and with it
// ServeFunction, on any of the process's threads.
func TestNameProcessFromAnyThread(t *testing.T) {
	old := processName(t)
	t.Cleanup(func() { nameProcess(old) })
	onOtherThread(func() { nameProcess("/usr/libexec/noderpc/a-long-function-binary") })
	// The kernel keeps 15 bytes of a name.
	if got, want := processName(t), "a-long-function"; got != want {
		t.Errorf("named from a thread other than the first, the process is named %q, want %q", got, want)
	}
}

// processName returns the name ps and top show for this process.
func processName(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// onOtherThread runs f on a thread that is not the process's first. f's
// goroutine ends locked to its thread, so that thread ends too, with
// whatever f did to it.
func onOtherThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if syscall.Gettid() != syscall.Getpid() {
			f()
			return
		}
		// This goroutine holds the first thread while it waits, so the
		// next one runs on another.
		defer runtime.UnlockOSThread()
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			runtime.LockOSThread()
			f()
		}()
		<-inner
	}()
	<-done
}

func init() {
	// Locked in init, the main goroutine runs main, and TestMain, on the
	// process's first thread.
	if os.Getenv(helperEnv) == "name-on-first-thread" {
		runtime.LockOSThread()
	}
}

// TestNameProcessFromFirstThread: on the first thread, where a function
// process's main usually runs, nameProcess names the process too (there
// by prctl).
func TestNameProcessFromFirstThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "/usr/libexec/noderpc/another-long-function-binary")
	cmd.Env = append(os.Environ(), helperEnv+"=name-on-first-thread")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if got, want := strings.TrimSuffix(string(out), "\n"), "another-long-fu"; got != want {
		t.Errorf("named from the first thread, the process is named %q, want %q", got, want)
	}
}
