package noded_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// startSleepCall starts a sleep call on d and returns its process's PID
// (the cpid of its call ID) and the cancel of the call, which the caller
// defers.
func startSleepCall(t *testing.T, d *node) (pid int, cancel func()) {
	t.Helper()
	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 30), Timeout: 0})
	cancel = func() { d.cancel(t, c.ID) }
	id, err := rpc.ParseCallID(c.ID)
	if err != nil {
		cancel()
		t.Fatalf("call ID %q: %v", c.ID, err)
	}
	return id.CPID, cancel
}

// callProcessRuns starts a sleep call on d and reports whether its
// process runs the program in file bin, read from /proc/PID/exe of the
// call's process.
func callProcessRuns(t *testing.T, d *node, bin string) bool {
	t.Helper()
	pid, cancel := startSleepCall(t, d)
	defer cancel()
	exe, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		t.Fatalf("the call's process %d: %v", pid, err)
	}
	want, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(exe, want)
}

// TestFunctionBinaryBeside: a noded with noded-fn beside it (as nodetest
// and an install place it) runs its Go functions in that lean binary,
// cold and warm, not in its own.
func TestFunctionBinaryBeside(t *testing.T) {
	t.Parallel()
	bin := nodetest.Noded(t) + "-fn"
	for _, warm := range []string{"0", "2"} {
		d := startNoded(t, "--warm", warm)
		if !callProcessRuns(t, d, bin) {
			t.Errorf("--warm %s: a Go function's process does not run %s", warm, bin)
		}
		d.AwaitLogLine(t, `msg="Go functions run in the function binary"`, "path="+bin)
	}
}

// TestFunctionBinaryFallback: a noded with no function binary beside it
// (a custom noded, or go run) runs its Go functions in its own binary,
// and says so.
func TestFunctionBinaryFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	self := filepath.Join(dir, "noded")
	if err := os.Link(nodetest.Noded(t), self); err != nil {
		t.Fatal(err)
	}
	d := startNodedWith(t, nodetest.Options{Binary: self})
	if !callProcessRuns(t, d, self) {
		t.Errorf("a Go function's process does not run noded's own binary %s", self)
	}
	d.AwaitLogLine(t, `msg="Go functions run in noded's own binary`, "want="+self+"-fn")
}

// TestFunctionProcessName: a function process started through the
// function binary's descriptor still shows, in ps and top, the binary's
// path as its argv[0] and its name as its own, cold and warm; noded's own
// binary, when it runs the functions, shows noded's.
func TestFunctionProcessName(t *testing.T) {
	t.Parallel()
	bin := nodetest.Noded(t) + "-fn"
	for _, warm := range []string{"0", "2"} {
		d := startNoded(t, "--warm", warm)
		awaitCallProcessName(t, d, bin)
	}
	dir := t.TempDir()
	self := filepath.Join(dir, "noded")
	if err := os.Link(nodetest.Noded(t), self); err != nil {
		t.Fatal(err)
	}
	awaitCallProcessName(t, startNodedWith(t, nodetest.Options{Binary: self}), self)
}

// awaitCallProcessName starts a sleep call on d and waits until its
// process names itself after bin: argv[0] bin, comm its last element (a
// cold process names itself as it starts, after the start's answer).
func awaitCallProcessName(t *testing.T, d *node, bin string) {
	t.Helper()
	pid, cancel := startSleepCall(t, d)
	defer cancel()
	proc := "/proc/" + strconv.Itoa(pid)
	want := filepath.Base(bin)
	want = want[:min(len(want), 15)] // the kernel keeps 15 bytes of a name
	var comm, arg0 string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(proc + "/comm")
		comm = strings.TrimSpace(string(b))
		b, _ = os.ReadFile(proc + "/cmdline")
		arg0, _, _ = strings.Cut(string(b), "\x00")
		if comm == want {
			break
		}
	}
	if comm != want || arg0 != bin {
		t.Errorf("the call's process %d is named %q with argv[0] %q; want %q and %q", pid, comm, arg0, want, bin)
	}
}

// TestFunctionBinaryUntrusted: a function binary others may write is
// refused at start, exit status 2, never run as noded's user.
func TestFunctionBinaryUntrusted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "fn")
	b, err := os.ReadFile(nodetest.Noded(t) + "-fn")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o775); err != nil {
		t.Fatal(err)
	}
	status, out := runNoded(t, "--insecure", "--config", "", "--listen", "127.0.0.1:0", "--function-binary", bin)
	if status != 2 || !strings.Contains(out, "writable by group or others") {
		t.Errorf("noded --function-binary with a group-writable file: exit %d, output %q; want 2 and why", status, out)
	}
}

// TestOwnNodedFunctionBinary: a custom noded (noded-hello) with its own
// function binary beside it (noded-hello-fn), as doc/functions.md
// describes, runs its own function and the builtins in that binary.
func TestOwnNodedFunctionBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	self, fn := filepath.Join(dir, "noded-hello"), filepath.Join(dir, "noded-hello-fn")
	for bin, pkg := range map[string]string{
		self: "github.com/noderpc/noderpc/noded/cmd/noded-hello",
		fn:   "github.com/noderpc/noderpc/noded/cmd/noded-hello-fn",
	} {
		if err := os.Link(nodetest.Binary(t, pkg), bin); err != nil {
			t.Fatal(err)
		}
	}
	d := startNodedWith(t, nodetest.Options{Binary: self})
	c := d.start(t, rpc.StartRequest{FnName: "hello", FnArgs: json.RawMessage(`{"name":"node1"}`), Timeout: 60})
	if c.State != rpc.StateSucceeded || !strings.Contains(string(c.Result), "hello, node1") {
		t.Errorf("hello on noded-hello with its function binary = %s %s %v, want the greeting", c.State, c.Result, c.Error)
	}
	if !callProcessRuns(t, d, fn) {
		t.Errorf("noded-hello's Go functions do not run in %s", fn)
	}
}

// copyFunctionBinary copies the built noded-fn to path with mode.
func copyFunctionBinary(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(nodetest.Noded(t) + "-fn")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigFunctionBinary: --check-config refuses, with exit 2
// and why, every --function-binary noded would refuse at start, and
// accepts the built one.
func TestCheckConfigFunctionBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, plain, writable := filepath.Join(dir, "fn"), filepath.Join(dir, "plain"), filepath.Join(dir, "writable")
	copyFunctionBinary(t, good, 0o755)
	copyFunctionBinary(t, plain, 0o644)
	copyFunctionBinary(t, writable, 0o775)
	for _, tc := range []struct{ bin, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "not an executable regular file"},
		{plain, "not an executable regular file"},
		{writable, "writable by group or others"},
	} {
		status, out := runNoded(t, "--config=", "--insecure", "--function-binary", tc.bin, "--check-config")
		if status != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("--check-config --function-binary %s: exit %d, %s; want 2 saying %q", tc.bin, status, out, tc.want)
		}
	}
	if status, out := runNoded(t, "--config=", "--insecure", "--function-binary", good, "--check-config"); status != 0 {
		t.Errorf("--check-config --function-binary %s: exit %d, %s; want 0", good, status, out)
	}
}

// TestFunctionBinaryScript: a script given as the function binary is
// refused (by --check-config as at start), since its interpreter could not open the descriptor
// it runs through and every call would fail.
func TestFunctionBinaryScript(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "fn.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+nodetest.Noded(t)+"-fn\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	status, out := runNoded(t, "--insecure", "--config", "", "--function-binary", script, "--check-config")
	if status != 2 || !strings.Contains(out, "not an ELF executable") {
		t.Errorf("noded --function-binary with a script: exit %d, output %q; want 2 and why", status, out)
	}
}

// TestFunctionBinarySymlinkTarget: a function binary reached through a
// symlink is judged where the link leads: a target in a directory
// others may write is refused (by --check-config as at start), as a
// function's is.
func TestFunctionBinarySymlinkTarget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(open, "noded-fn")
	copyFunctionBinary(t, target, 0o755)
	link := filepath.Join(dir, "noded-fn")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	status, out := runNoded(t, "--insecure", "--config", "", "--function-binary", link, "--check-config")
	if status != 2 || !strings.Contains(out, open+" is writable by group or others") {
		t.Errorf("noded --function-binary with a symlink into a world-writable directory: exit %d, output %q; want 2 and why", status, out)
	}
}

// otherProtocolFn builds, in dir, a program that greets as a function
// binary of protocol 1 would: noded-fn of an older noded, left by a
// half-done upgrade.
func otherProtocolFn(t *testing.T, dir string) string {
	t.Helper()
	src := "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"{\\\"protocol\\\":1,\\\"pid\\\":1}\\n\") }\n"
	for name, text := range map[string]string{"go.mod": "module oldfn\n\ngo 1.26\n", "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "noded-fn")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a function binary of protocol 1: %v\n%s", err, out)
	}
	return bin
}

// TestFunctionBinaryOtherProtocol: a function binary that greets with
// another protocol, or is no function binary at all, is refused with
// exit 2 and why (by --check-config; a start opens it the same way),
// instead of failing every Go function call of a daemon that looks
// healthy.
func TestFunctionBinaryOtherProtocol(t *testing.T) {
	t.Parallel()
	old := otherProtocolFn(t, t.TempDir())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--function-binary", old, "--check-config"}, "speaks protocol 1, noded speaks 2"},
		{[]string{"--function-binary", "/bin/true", "--check-config"}, "exited before its protocol hello"},
	} {
		status, out := runNoded(t, append([]string{"--insecure", "--config", ""}, tc.args...)...)
		if status != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("noded %q: exit %d, output %q; want 2 saying %q", tc.args, status, out, tc.want)
		}
	}
}

// TestFunctionBinaryFIFO: a FIFO given as the function binary is
// refused at once, not opened and waited on for a writer (which held
// noded, deaf to SIGTERM, before it served).
func TestFunctionBinaryFIFO(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "noded-fn")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	// The deadline only ends a noded that hangs, so the test fails
	// instead of hanging with it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, nodetest.Noded(t), "--insecure", "--config", "", "--function-binary", fifo, "--check-config").CombinedOutput()
	var exit *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "not an executable regular file") {
		t.Errorf("noded --check-config --function-binary FIFO: %v (context %v), output %q; want exit 2 and why", err, ctx.Err(), out)
	}
}

// TestFunctionProcessEnvironment: Go function processes run with
// GOMAXPROCS=1 unless noded is told otherwise, cold and warm; with
// --function-gomaxprocs 0 they get none from noded. Warm ones, and
// only they, are told they are (FunctionWarmKey), so that they prime.
func TestFunctionProcessEnvironment(t *testing.T) {
	t.Parallel()
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		t.Skipf("GOMAXPROCS=%s in the test's environment, which noded's function processes would inherit", v)
	}
	warm := rpc.FunctionWarmKey + "=1"
	for _, tt := range []struct {
		args []string
		pool float64 // the warm pool's size: the call waits until it is full, so that it runs warm
		want []string
	}{
		{[]string{"--warm", "0"}, 0, []string{"GOMAXPROCS=1"}},
		{[]string{"--warm", "2"}, 2, []string{"GOMAXPROCS=1", warm}},
		{[]string{"--warm", "2", "--function-gomaxprocs", "3"}, 2, []string{"GOMAXPROCS=3", warm}},
		{[]string{"--warm", "0", "--function-gomaxprocs", "0"}, 0, nil},
	} {
		d := startNoded(t, tt.args...)
		if tt.pool > 0 {
			d.AwaitMetrics(t, map[string]float64{"noded_warm_processes_idle": tt.pool})
		}
		pid, cancel := startSleepCall(t, d)
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range strings.Split(string(b), "\x00") {
			if strings.HasPrefix(kv, "GOMAXPROCS=") || strings.HasPrefix(kv, rpc.FunctionWarmKey+"=") {
				got = append(got, kv)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("noded %v: the call's process has %q, want %q", tt.args, got, tt.want)
		}
	}
}
