package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// TestExecErrorsSayTheFix starts executable functions the kernel will not
// run and checks each is refused with the kind of an operator's mistake,
// not internal, and a message that names the cause and the fix.
func TestExecErrorsSayTheFix(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	dir := functionsDir(tb)
	files := map[string]string{
		"noshebang": "echo '\"hi\"'\n",
		"crlf":      "#!/bin/sh\r\necho '\"hi\"'\r\n",
		"nointerp":  "#!/nonexistent/interpreter\necho '\"hi\"'\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		fn   string
		kind rpc.Kind
		want []string
	}{
		{"noshebang", rpc.KindUnknownFunction, []string{"no \"#!\" first line", "#!/bin/sh"}},
		{"crlf", rpc.KindUnknownFunction, []string{"CRLF", "dos2unix"}},
		{"nointerp", rpc.KindUnknownFunction, []string{"/nonexistent/interpreter", "does not exist"}},
	}
	for _, tt := range tests {
		_, err := tb.Start(t.Context(), StartOptions{Fn: tt.fn, Timeout: 30 * time.Second})
		var re *rpc.Error
		if !errors.As(err, &re) || re.Kind != tt.kind {
			t.Errorf("Start(%s) = %v, want kind %s", tt.fn, err, tt.kind)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(re.Message, w) {
				t.Errorf("Start(%s) says %q, want it to mention %q", tt.fn, re.Message, w)
			}
		}
	}
}

// busyOnce returns a startProcess that, the first time, holds path open
// for writing while it starts the process, as a function file being
// replaced in place is, so that the kernel refuses the exec with
// ETXTBSY; then lets go of the file, so that a second try would work.
func busyOnce(t *testing.T, path string) func(Spec, *cgroup, string) (*process, error) {
	first := true
	return func(spec Spec, cg *cgroup, tag string) (*process, error) {
		if !first {
			return spawn(spec, cg, tag)
		}
		first = false
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		return spawn(spec, cg, tag)
	}
}

// TestTextFileBusyKeepsCgroups: a function file being written when a
// call starts fails that call, busy, and leaves cgroup containment on;
// it is the call's error, not the kernel refusing cgroups.
func TestTextFileBusyKeepsCgroups(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	requireCgroups(t, tb)
	path := filepath.Join(functionsDir(tb), "answer")
	if err := os.WriteFile(path, []byte("#!/bin/sh\ncat >/dev/null\necho '\"ok\"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tb.startProcess = busyOnce(t, path)
	_, err := tb.Start(t.Context(), StartOptions{Fn: "answer", Timeout: 30 * time.Second})
	if !errors.Is(err, rpc.ErrBusy) || !strings.Contains(err.Error(), "text file busy") {
		t.Errorf("Start while the file is being written = %v, want busy saying text file busy", err)
	}
	if got := tb.Containment(); got != ContainCgroup {
		t.Fatalf("Containment() after a text file busy = %s, want cgroup", got)
	}
	// A test running in parallel may fork while this test's WriteFile
	// still has the file open for writing, and its child then holds it
	// open until that child's exec (golang/go#22315): the exec here is
	// busy for that moment, as it would be for a real client, who tries
	// again.
	var c *rpc.Call
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err = tb.Start(t.Context(), StartOptions{Fn: "answer", Timeout: 30 * time.Second})
		if !errors.Is(err, rpc.ErrBusy) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || c.State != rpc.StateSucceeded {
		t.Fatalf("answer once the file is in place = %v, %v; want succeeded", c, err)
	}
}

// TestCgroupRefusalRetried: after the kernel refused a cgroup, calls run
// by process group; once the back-off has passed, the next call tries a
// cgroup again and, the cause gone, containment is back to cgroup.
func TestCgroupRefusalRetried(t *testing.T) {
	t.Parallel()
	var clock fakeClock
	clock.set(time.Now())
	tb := newTable(t, Config{Now: clock.now})
	requireCgroups(t, tb)
	real := tb.cgroups.dir
	tb.cgroups.dir = t.TempDir() // not a cgroup: clone3 refuses it
	echo := func(what string) {
		t.Helper()
		c := start(t, tb, StartOptions{Fn: "echo", Args: json.RawMessage(`1`), Timeout: 30 * time.Second})
		if c.State != rpc.StateSucceeded {
			t.Fatalf("echo %s = %s %v, want succeeded", what, c.State, c.Error)
		}
	}
	echo("with the cgroup refused")
	if got := tb.Containment(); got != ContainProcessGroup {
		t.Fatalf("Containment() after a refusal = %s, want process-group", got)
	}
	tb.cgroups.dir = real // the operator fixed the cause
	clock.add(cgroupRetryMin / 2)
	echo("within the back-off")
	if got := tb.Containment(); got != ContainProcessGroup {
		t.Errorf("Containment() within the back-off = %s, want process-group (not tried yet)", got)
	}
	clock.add(cgroupRetryMin)
	echo("after the back-off")
	if got := tb.Containment(); got != ContainCgroup {
		t.Errorf("Containment() once the back-off passed and cgroups work = %s, want cgroup", got)
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestFunctionsRunInTheDaemonsDirectory: a function's working directory
// is noded's own, the state directory the unit sets, not /.
func TestFunctionsRunInTheDaemonsDirectory(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	script := "#!/bin/sh\ncat >/dev/null\nprintf '\"%s\"' \"$(pwd)\"\n"
	if err := os.WriteFile(filepath.Join(functionsDir(tb), "pwd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c := start(t, tb, StartOptions{Fn: "pwd", Timeout: 30 * time.Second})
	want, _ := json.Marshal(wd)
	if c.State != rpc.StateSucceeded || string(c.Result) != string(want) {
		t.Errorf("pwd = %s %s %v, want %s, the daemon's working directory", c.State, c.Result, c.Error, want)
	}
}
