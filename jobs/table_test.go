package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/rpc"
)

// extraFunctions are registered by other test files.
var extraFunctions = map[string]backend.Func{}

// testRegistry holds the functions the test binary serves when the table
// re-executes it as a function process (STYLE.md: the test binary is the
// child).
func testRegistry() *backend.Registry {
	reg := backend.NewRegistry()
	for name, fn := range extraFunctions {
		reg.Register(name, fn)
	}
	backend.RegisterBuiltins(reg)
	reg.Register("fail", func(ctx context.Context, args json.RawMessage) (any, error) {
		backend.Logger(ctx).Info("about to fail")
		return nil, errors.New("it went wrong")
	})
	// failkind fails with the error kind its args name, as a function
	// that returns an *rpc.Error of its own choosing does.
	reg.Register("failkind", func(ctx context.Context, args json.RawMessage) (any, error) {
		var kind string
		json.Unmarshal(args, &kind)
		return nil, rpc.Errorf(rpc.Kind(kind), "chose %s", kind)
	})
	reg.Register("crash", func(ctx context.Context, args json.RawMessage) (any, error) {
		fmt.Fprintln(os.Stderr, "crashing now")
		os.Exit(3)
		return nil, nil
	})
	reg.Register("killself", func(ctx context.Context, args json.RawMessage) (any, error) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	reg.Register("big", func(ctx context.Context, args json.RawMessage) (any, error) {
		var n int
		json.Unmarshal(args, &n)
		return strings.Repeat("x", n), nil
	})
	reg.Register("loglines", func(ctx context.Context, args json.RawMessage) (any, error) {
		var n int
		json.Unmarshal(args, &n)
		for i := range n {
			backend.Logger(ctx).Info("line", "i", i)
		}
		return n, nil
	})
	// grandchild starts a sleep in its process group, logs its PID, and
	// waits to be stopped.
	reg.Register("grandchild", func(ctx context.Context, args json.RawMessage) (any, error) {
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		done := ctx.Done() // from the line on, SIGTERM is ignored
		backend.Logger(ctx).Info("grandchild", "pid", cmd.Process.Pid)
		<-done
		select {} // leave the grandchild to the group kill
	})
	// ignoreterm ignores SIGTERM so only the SIGKILL after grace ends it.
	reg.Register("ignoreterm", func(ctx context.Context, args json.RawMessage) (any, error) {
		// Looking at the context asks for SIGTERM; only then does the
		// line say the signal no longer ends the process by default.
		done := ctx.Done()
		backend.Logger(ctx).Info("ignoring SIGTERM")
		<-done
		select {}
	})
	return reg
}

func TestMain(m *testing.M) {
	if backend.IsFunctionProcess() {
		os.Exit(backend.ServeFunction(testRegistry(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testFunctions resolves the test registry's functions to this test
// binary, and other names to executables in dir, as noded's resolver does
// with its registry and functions directory.
type testFunctions struct {
	reg  *backend.Registry
	self string
	dir  string
}

var _ Resolver = (*testFunctions)(nil)

func (f *testFunctions) Resolve(name string) (Spec, error) {
	if err := backend.CheckName(name); err != nil {
		return Spec{}, err
	}
	if _, ok := f.reg.Lookup(name); ok {
		spec := f.goProcess()
		spec.Name, spec.Args = name, append(spec.Args, name)
		return spec, nil
	}
	path := filepath.Join(f.dir, name)
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		return Spec{}, rpc.Errorf(rpc.KindUnknownFunction, "no function %q", name)
	}
	return Spec{Name: name, Path: path}, nil
}

// goProcess is how the test binary is started as a Go function process.
func (f *testFunctions) goProcess() Spec {
	return Spec{
		Path:     f.self,
		Args:     []string{"function"},
		Env:      []string{rpc.FunctionCookieKey + "=" + rpc.FunctionCookieValue},
		Protocol: ProtocolFramed,
	}
}

func newFunctions(t *testing.T) *testFunctions {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &testFunctions{reg: testRegistry(), self: self, dir: t.TempDir()}
}

// functionsDir is where tb looks for executable functions.
func functionsDir(tb *Table) string { return tb.cfg.Resolver.(*testFunctions).dir }

func newTable(t *testing.T, cfg Config) *Table {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = newFunctions(t)
	}
	if cfg.Grace == 0 {
		cfg.Grace = 2 * time.Second
	}
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tb.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tb
}

func start(t *testing.T, tb *Table, o StartOptions) *rpc.Call {
	t.Helper()
	c, err := tb.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start(%+v): %v", o, err)
	}
	return c
}

func wait(t *testing.T, tb *Table, id string, timeout time.Duration) *rpc.Call {
	t.Helper()
	c, err := tb.Wait(context.Background(), id, WaitOptions{Timeout: timeout})
	if err != nil {
		t.Fatalf("Wait(%s): %v", id, err)
	}
	return c
}

// waitLogged waits until the running call id has logged a line, which its
// function writes once it runs: its process has installed its SIGTERM
// handler by then, so a stop is seen by the function, not by the
// process's default action. It returns the record with the log.
func waitLogged(t *testing.T, tb *Table, id string) *rpc.Call {
	t.Helper()
	c, err := tb.Wait(context.Background(), id, WaitOptions{Timeout: 30 * time.Second, WakeOnLog: true})
	if err != nil || len(c.Log) == 0 || c.Finished {
		t.Fatalf("Wait(%s, wake_on_log) = %+v, %v; want the running call with a log line", id, c, err)
	}
	return c
}

func TestTransitions(t *testing.T) {
	all := []rpc.State{rpc.StateRunning, rpc.StateSucceeded, rpc.StateFailed, rpc.StateCancelled, rpc.StateAborted, rpc.StateLost}
	for _, from := range all {
		for _, to := range all {
			want := from == rpc.StateRunning && to != rpc.StateRunning && to != rpc.StateLost
			err := checkTransition("x", from, to)
			if got := err == nil; got != want {
				t.Errorf("checkTransition(%s -> %s) = %v, want legal=%v", from, to, err, want)
			}
		}
	}
}

func TestLogTail(t *testing.T) {
	l := logTail{max: 3}
	for i := range 5 {
		l.add(strconv.Itoa(i))
	}
	tests := []struct {
		offset      int
		want        []string
		wantDropped int
	}{
		{0, []string{"2", "3", "4"}, 2},
		{2, []string{"2", "3", "4"}, 0},
		{4, []string{"4"}, 0},
		{5, []string{}, 0},
		{9, []string{}, 0},
	}
	for _, tt := range tests {
		got, dropped := l.since(tt.offset)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) || dropped != tt.wantDropped {
			t.Errorf("since(%d) = %q, %d; want %q, %d", tt.offset, got, dropped, tt.want, tt.wantDropped)
		}
	}
	if l.end() != 5 {
		t.Errorf("end() = %d, want 5", l.end())
	}
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{MaxResult: 1000})
	code := func(n int) *int { return &n }
	tests := []struct {
		fn        string
		args      string
		wantState rpc.State
		wantKind  rpc.Kind
		wantCode  *int
		wantSig   string
		wantMsg   string
	}{
		{fn: "echo", args: `{"a":[1,2]}`, wantState: rpc.StateSucceeded},
		{fn: "fail", wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(1), wantMsg: "it went wrong"},
		// A function chooses its error's kind among the call kinds; any
		// other would tell a caller the call never ran.
		{fn: "failkind", args: `"result_too_large"`, wantState: rpc.StateFailed, wantKind: rpc.KindResultTooLarge, wantCode: code(1), wantMsg: "chose result_too_large"},
		{fn: "failkind", args: `"busy"`, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(1), wantMsg: `error kind "busy": chose busy`},
		{fn: "failkind", args: `"unreachable"`, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(1), wantMsg: `error kind "unreachable"`},
		{fn: "failkind", args: `"invented"`, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(1), wantMsg: `error kind "invented"`},
		{fn: "crash", wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(3), wantMsg: "crashing now"},
		{fn: "killself", wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantSig: "SIGKILL"},
		{fn: "big", args: `10`, wantState: rpc.StateSucceeded},
		{fn: "big", args: `5000`, wantState: rpc.StateFailed, wantKind: rpc.KindResultTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.fn+tt.args, func(t *testing.T) {
			t.Parallel()
			c := start(t, tb, StartOptions{Fn: tt.fn, Args: json.RawMessage(tt.args), Timeout: 30 * time.Second})
			if !c.Finished || c.State != tt.wantState {
				t.Fatalf("Start(%s) state = %s finished=%v, want %s; error %v", tt.fn, c.State, c.Finished, tt.wantState, c.Error)
			}
			if tt.wantKind == "" {
				if c.Error != nil {
					t.Fatalf("Start(%s) error = %v, want none", tt.fn, c.Error)
				}
				if tt.fn == "echo" && string(c.Result) != tt.args {
					t.Errorf("echo result = %s, want %s", c.Result, tt.args)
				}
				return
			}
			if c.Error == nil || c.Error.Kind != tt.wantKind {
				t.Fatalf("Start(%s) error = %v, want kind %s", tt.fn, c.Error, tt.wantKind)
			}
			if tt.wantCode != nil && (c.Error.ExitCode == nil || *c.Error.ExitCode != *tt.wantCode) {
				t.Errorf("Start(%s) exit code = %v, want %d", tt.fn, c.Error.ExitCode, *tt.wantCode)
			}
			if tt.wantKind == rpc.KindFunctionFailed && c.Error.Signal != tt.wantSig {
				t.Errorf("Start(%s) signal = %q, want %q", tt.fn, c.Error.Signal, tt.wantSig)
			}
			if !strings.Contains(c.Error.Message, tt.wantMsg) {
				t.Errorf("Start(%s) message = %q, want it to contain %q", tt.fn, c.Error.Message, tt.wantMsg)
			}
			if !errors.Is(c.Err(), &rpc.Error{Kind: tt.wantKind}) {
				t.Errorf("errors.Is(%v, kind %s) = false", c.Err(), tt.wantKind)
			}
		})
	}
}

func TestExecutableFunction(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	dir := functionsDir(tb)
	scripts := map[string]string{
		"double":  "#!/bin/sh\nread x; echo \"[$x, $x]\"\n",
		"garbage": "#!/bin/sh\necho 'this is not json'\n",
		"exit7":   "#!/bin/sh\necho 'disk on fire' >&2\nexit 7\n",
		"noread":  "#!/bin/sh\necho '\"ok\"'\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(dir+"/"+name, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		fn, args, wantResult string
		wantKind             rpc.Kind
	}{
		{"double", "21", "[21, 21]", ""},
		{"garbage", "1", "", rpc.KindProtocolError},
		{"exit7", "1", "", rpc.KindFunctionFailed},
		{"noread", strings.Repeat(" ", 1<<20) + "1", `"ok"`, ""},
	}
	for _, tt := range tests {
		c := start(t, tb, StartOptions{Fn: tt.fn, Args: json.RawMessage(tt.args), Timeout: 30 * time.Second})
		if tt.wantKind != "" {
			if c.Error == nil || c.Error.Kind != tt.wantKind {
				t.Errorf("Start(%s) = %s %v, want kind %s", tt.fn, c.State, c.Error, tt.wantKind)
			}
			continue
		}
		if c.State != rpc.StateSucceeded || string(c.Result) != tt.wantResult {
			t.Errorf("Start(%s) = %s %s %v, want succeeded %s", tt.fn, c.State, c.Result, c.Error, tt.wantResult)
		}
	}
}

func TestFireAndForgetThenWaitRounds(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	c := start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":0.5}`), Timeout: 0})
	if c.Finished || c.State != rpc.StateRunning {
		t.Fatalf("Start with timeout 0 = %s, want running at once", c.State)
	}
	if _, err := rpc.ParseCallID(c.ID); err != nil {
		t.Fatalf("ID %q does not parse: %v", c.ID, err)
	}
	rounds := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); rounds++ {
		c = wait(t, tb, c.ID, 50*time.Millisecond)
		if c.Finished {
			break
		}
	}
	if c.State != rpc.StateSucceeded || rounds < 2 {
		t.Fatalf("after %d rounds state = %s (%v), want succeeded after >= 2 rounds", rounds, c.State, c.Error)
	}
}

func TestLogOffsetsAndWakeOnLog(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{MaxLogLines: 5})
	c := start(t, tb, StartOptions{Fn: "loglines", Args: json.RawMessage(`8`), Timeout: 30 * time.Second})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("loglines = %s %v", c.State, c.Error)
	}
	if c.LogOffset != 8 || len(c.Log) != 5 || c.LogDropped != 3 {
		t.Fatalf("log_offset=%d lines=%d dropped=%d, want 8, 5, 3", c.LogOffset, len(c.Log), c.LogDropped)
	}
	if !strings.Contains(c.Log[4], "i=7") {
		t.Errorf("last line %q, want the line with i=7", c.Log[4])
	}
	again, err := tb.Wait(context.Background(), c.ID, WaitOptions{LogOffset: 7})
	if err != nil || len(again.Log) != 1 || again.LogDropped != 0 {
		t.Fatalf("Wait from offset 7 = %v lines %q dropped %d, want one line", err, again.Log, again.LogDropped)
	}

	// A waiter asking to wake on log returns at the first line, long
	// before the function ends.
	g := start(t, tb, StartOptions{Fn: "grandchild", Timeout: 0})
	begin := time.Now()
	got, err := tb.Wait(context.Background(), g.ID, WaitOptions{Timeout: 30 * time.Second, WakeOnLog: true})
	if err != nil || got.Finished || len(got.Log) == 0 {
		t.Fatalf("Wait(wake_on_log) = %v finished=%v log=%q, want early return with a line", err, got.Finished, got.Log)
	}
	// grandchild never ends by itself: only the log line can have ended
	// the wait before its timeout.
	if took := time.Since(begin); took >= 30*time.Second {
		t.Errorf("Wait(wake_on_log) returned after %v, its full timeout, want at the first log line", took)
	}
}

func TestCancelKillsTheGroup(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	c := start(t, tb, StartOptions{Fn: "grandchild", Timeout: 0})
	got := waitLogged(t, tb, c.ID)
	_, pidText, _ := strings.Cut(got.Log[0], "pid=")
	pid, err := strconv.Atoi(strings.Fields(pidText)[0])
	if err != nil {
		t.Fatalf("no pid in %q", got.Log[0])
	}
	c, err = tb.Cancel(context.Background(), c.ID, 30*time.Second)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if c.State != rpc.StateCancelled || c.Error.Kind != rpc.KindCancelled {
		t.Fatalf("after Cancel state = %s %v, want cancelled", c.State, c.Error)
	}
	waitGone(t, pid)
	// Cancelling again changes nothing.
	again, err := tb.Cancel(context.Background(), c.ID, 30*time.Second)
	if err != nil || again.State != rpc.StateCancelled {
		t.Fatalf("second Cancel = %v %v, want the same cancelled record", again, err)
	}
}

// waitGone polls until pid no longer runs (gone, or a zombie waiting for
// whoever reaps orphans here).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			return
		}
	}
	t.Fatalf("process %d still runs", pid)
}

func TestAbortAfter(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	c := start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":60}`), AbortAfter: 100 * time.Millisecond, Timeout: 30 * time.Second})
	if c.State != rpc.StateAborted || c.Error.Kind != rpc.KindAborted || !strings.Contains(c.Error.Message, "abort_after") {
		t.Fatalf("sleep 60 with abort_after 100ms = %s %v, want aborted by abort_after", c.State, c.Error)
	}
}

// TestGraceThenSIGKILL stops a function that ignores SIGTERM and checks
// it is killed after the grace. It stops the function only once it runs:
// a SIGTERM before the process installed its handler would end it at
// once, by the signal's default action.
func TestGraceThenSIGKILL(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{Grace: 200 * time.Millisecond})
	c := start(t, tb, StartOptions{Fn: "ignoreterm"})
	waitLogged(t, tb, c.ID)
	c, err := tb.Cancel(context.Background(), c.ID, 30*time.Second)
	if err != nil || c.State != rpc.StateCancelled || c.Error.Signal != "SIGKILL" {
		t.Fatalf("Cancel(ignoreterm) = %+v, %v; want cancelled, ended by SIGKILL after the grace", c, err)
	}
}

func TestRequestIDStartsOnce(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	const n = 8
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := tb.Start(context.Background(), StartOptions{Fn: "echo", Args: json.RawMessage(`1`), RequestID: "r1", Timeout: 30 * time.Second})
			if err != nil {
				t.Errorf("Start: %v", err)
				return
			}
			ids <- c.ID
		})
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("request_id r1 gave IDs %s and %s, want one call", first, id)
		}
	}
	if got := len(tb.List()); got != 1 {
		t.Errorf("table holds %d calls, want 1", got)
	}
	_, err := tb.Start(context.Background(), StartOptions{Fn: "sleep", RequestID: "r1"})
	if !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("request_id reused for another function: err = %v, want bad_request", err)
	}
}

func TestBusy(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{MaxRunning: 1})
	c := start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":60}`)})
	_, err := tb.Start(context.Background(), StartOptions{Fn: "echo"})
	if !errors.Is(err, rpc.ErrBusy) {
		t.Fatalf("second start over max-running = %v, want busy", err)
	}
	if _, err := tb.Cancel(context.Background(), c.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := start(t, tb, StartOptions{Fn: "echo", Timeout: 30 * time.Second}); got.State != rpc.StateSucceeded {
		t.Fatalf("start after the slot freed = %s %v", got.State, got.Error)
	}
}

func TestLookupErrors(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	old := rpc.NewCallID(os.Getpid(), 1, tb.Started().Add(-time.Second)).String()
	future := rpc.NewCallID(os.Getpid(), 1, tb.Started().Add(time.Second)).String()
	tests := []struct {
		id   string
		want error
	}{
		{old, rpc.ErrLost},
		{future, rpc.ErrUnknownCall},
		{"1:2:3", rpc.ErrBadRequest},
		{"a:b:c.d:e", rpc.ErrBadRequest},
	}
	for _, tt := range tests {
		_, err := tb.Wait(context.Background(), tt.id, WaitOptions{})
		if !errors.Is(err, tt.want) {
			t.Errorf("Wait(%q) = %v, want %v", tt.id, err, tt.want)
		}
	}
	if _, err := tb.Start(context.Background(), StartOptions{Fn: "nosuch"}); !errors.Is(err, rpc.ErrUnknownFunction) {
		t.Errorf("Start(nosuch) = %v, want unknown_function", err)
	}
}

func TestReleaseAndRetention(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tb := newTable(t, Config{Retention: time.Hour, Now: clock})

	running := start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":60}`)})
	if err := tb.Release(running.ID); !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("Release(running) = %v, want bad_request", err)
	}
	a := start(t, tb, StartOptions{Fn: "echo", Timeout: 30 * time.Second})
	b := start(t, tb, StartOptions{Fn: "echo", Timeout: 30 * time.Second, RequestID: "b"})
	if err := tb.Release(a.ID); err != nil {
		t.Fatalf("Release(finished) = %v", err)
	}
	if _, err := tb.Wait(context.Background(), a.ID, WaitOptions{}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("Wait after Release = %v, want unknown_call", err)
	}
	if n := tb.Expire(now.Add(time.Hour - time.Second)); n != 0 {
		t.Errorf("Expire before the retention dropped %d calls, want 0", n)
	}
	if n := tb.Expire(now.Add(time.Hour)); n != 1 {
		t.Errorf("Expire at the retention dropped %d calls, want 1 (the finished, unreleased one)", n)
	}
	if _, err := tb.Wait(context.Background(), b.ID, WaitOptions{}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("Wait after expiry = %v, want unknown_call", err)
	}
	// Its request_id is free again once the call is gone.
	if c := start(t, tb, StartOptions{Fn: "echo", Timeout: 30 * time.Second, RequestID: "b"}); c.ID == b.ID {
		t.Errorf("request_id of an expired call answered the expired call")
	}
	if got := wait(t, tb, running.ID, 0); got.State != rpc.StateRunning {
		t.Errorf("running call after Expire = %s, want still running", got.State)
	}
}

// TestShutdownStopsEverything stops calls that end on SIGTERM, ignore it,
// or leave a grandchild, once each runs (see TestGraceThenSIGKILL).
func TestShutdownStopsEverything(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{Grace: 300 * time.Millisecond})
	fns := []string{"sleep", "ignoreterm", "grandchild"}
	// wantSignal is how the process ends, for those that ignore SIGTERM;
	// sleep ends on SIGTERM, or by SIGKILL if it is slower than the grace.
	wantSignal := map[string]string{"ignoreterm": "SIGKILL", "grandchild": "SIGKILL"}
	var ids []string
	for _, fn := range fns {
		id := start(t, tb, StartOptions{Fn: fn, Args: json.RawMessage(`{"seconds":60}`)}).ID
		waitLogged(t, tb, id)
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tb.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, id := range ids {
		c := wait(t, tb, id, 0)
		if c.State != rpc.StateCancelled {
			t.Errorf("%s after Shutdown = %s, want cancelled", fns[i], c.State)
		}
		if want := wantSignal[fns[i]]; want != "" && (c.Error == nil || c.Error.Signal != want) {
			t.Errorf("%s after Shutdown: error %v, want it ended by %s", fns[i], c.Error, want)
		}
		cid, _ := rpc.ParseCallID(id)
		waitGone(t, cid.CPID)
	}
	if _, err := tb.Start(context.Background(), StartOptions{Fn: "echo"}); !errors.Is(err, rpc.ErrShuttingDown) {
		t.Errorf("Start after Shutdown = %v, want shutting_down", err)
	}
	if running, _ := tb.Counts(); running != 0 {
		t.Errorf("%d calls running after Shutdown, want 0", running)
	}
}

func TestSpawnError(t *testing.T) {
	tests := []struct {
		err  error
		want rpc.Kind
	}{
		{&os.SyscallError{Syscall: "fork/exec", Err: syscall.EAGAIN}, rpc.KindBusy},
		{fmt.Errorf("starting x: %w", syscall.ENOMEM), rpc.KindBusy},
		{fmt.Errorf("starting x: %w", syscall.EIO), rpc.KindInternal},
	}
	for _, tt := range tests {
		if got := spawnError("f", "/nonexistent/f", tt.err); got.Kind != tt.want || !strings.Contains(got.Message, tt.err.Error()) {
			t.Errorf("spawnError(%v) = %v, want kind %s quoting the cause", tt.err, got, tt.want)
		}
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	start(t, tb, StartOptions{Fn: "echo", Timeout: 30 * time.Second})
	start(t, tb, StartOptions{Fn: "sleep", Args: json.RawMessage(`{"seconds":60}`)})
	if running, finished := tb.Counts(); running != 1 || finished != 1 {
		t.Errorf("Counts() = %d running, %d finished; want 1 and 1", running, finished)
	}
}
