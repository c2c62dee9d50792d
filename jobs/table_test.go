package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
		backend.Logger(ctx).Info("grandchild", "pid", cmd.Process.Pid)
		<-ctx.Done()
		select {} // leave the grandchild to the group kill
	})
	// ignoreterm ignores SIGTERM so only the SIGKILL after grace ends it.
	reg.Register("ignoreterm", func(ctx context.Context, args json.RawMessage) (any, error) {
		backend.Logger(ctx).Info("ignoring SIGTERM")
		<-ctx.Done()
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

func newTable(t *testing.T, cfg Config) *Table {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Resolver = &backend.Functions{Registry: testRegistry(), Self: self, Dir: t.TempDir()}
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

func start(t *testing.T, tb *Table, req rpc.StartRequest) *rpc.Call {
	t.Helper()
	c, err := tb.Start(context.Background(), &req)
	if err != nil {
		t.Fatalf("Start(%+v): %v", req, err)
	}
	return c
}

func wait(t *testing.T, tb *Table, id string, timeout float64) *rpc.Call {
	t.Helper()
	c, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: id, Timeout: timeout})
	if err != nil {
		t.Fatalf("Wait(%s): %v", id, err)
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
		{fn: "crash", wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantCode: code(3), wantMsg: "crashing now"},
		{fn: "killself", wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantSig: "SIGKILL"},
		{fn: "big", args: `10`, wantState: rpc.StateSucceeded},
		{fn: "big", args: `5000`, wantState: rpc.StateFailed, wantKind: rpc.KindResultTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.fn+tt.args, func(t *testing.T) {
			t.Parallel()
			c := start(t, tb, rpc.StartRequest{FnName: tt.fn, FnArgs: json.RawMessage(tt.args), Timeout: 30})
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
	dir := tb.cfg.Resolver.(*backend.Functions).Dir
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
		c := start(t, tb, rpc.StartRequest{FnName: tt.fn, FnArgs: json.RawMessage(tt.args), Timeout: 30})
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
	c := start(t, tb, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":0.5}`), Timeout: 0})
	if c.Finished || c.State != rpc.StateRunning {
		t.Fatalf("Start with timeout 0 = %s, want running at once", c.State)
	}
	if _, err := rpc.ParseCallID(c.ID); err != nil {
		t.Fatalf("ID %q does not parse: %v", c.ID, err)
	}
	rounds := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); rounds++ {
		c = wait(t, tb, c.ID, 0.05)
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
	c := start(t, tb, rpc.StartRequest{FnName: "loglines", FnArgs: json.RawMessage(`8`), Timeout: 30})
	if c.State != rpc.StateSucceeded {
		t.Fatalf("loglines = %s %v", c.State, c.Error)
	}
	if c.LogOffset != 8 || len(c.Log) != 5 || c.LogDropped != 3 {
		t.Fatalf("log_offset=%d lines=%d dropped=%d, want 8, 5, 3", c.LogOffset, len(c.Log), c.LogDropped)
	}
	if !strings.Contains(c.Log[4], "i=7") {
		t.Errorf("last line %q, want the line with i=7", c.Log[4])
	}
	again, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: c.ID, LogOffset: 7})
	if err != nil || len(again.Log) != 1 || again.LogDropped != 0 {
		t.Fatalf("Wait from offset 7 = %v lines %q dropped %d, want one line", err, again.Log, again.LogDropped)
	}

	// A waiter asking to wake on log returns at the first line, long
	// before the function ends.
	g := start(t, tb, rpc.StartRequest{FnName: "grandchild", Timeout: 0})
	begin := time.Now()
	got, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: g.ID, Timeout: 30, WakeOnLog: true})
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
	c := start(t, tb, rpc.StartRequest{FnName: "grandchild", Timeout: 0})
	got, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: c.ID, Timeout: 30, WakeOnLog: true})
	if err != nil || len(got.Log) == 0 {
		t.Fatalf("no log line from grandchild: %v", err)
	}
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

func TestAbortAfterAndGrace(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{Grace: 200 * time.Millisecond})
	c := start(t, tb, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":60}`), AbortAfter: 0.1, Timeout: 30})
	if c.State != rpc.StateAborted || c.Error.Kind != rpc.KindAborted {
		t.Fatalf("sleep 60 with abort_after 0.1 = %s %v, want aborted", c.State, c.Error)
	}
	// A function that ignores SIGTERM is killed after the grace.
	c = start(t, tb, rpc.StartRequest{FnName: "ignoreterm", AbortAfter: 0.1, Timeout: 30})
	if c.State != rpc.StateAborted || c.Error.Signal != "SIGKILL" {
		t.Fatalf("ignoreterm with abort_after = %s %v, want aborted by SIGKILL", c.State, c.Error)
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
			c, err := tb.Start(context.Background(), &rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), RequestID: "r1", Timeout: 30})
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
	_, err := tb.Start(context.Background(), &rpc.StartRequest{FnName: "sleep", RequestID: "r1"})
	if !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("request_id reused for another function: err = %v, want bad_request", err)
	}
}

func TestBusy(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{MaxRunning: 1})
	c := start(t, tb, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":60}`)})
	_, err := tb.Start(context.Background(), &rpc.StartRequest{FnName: "echo"})
	if !errors.Is(err, rpc.ErrBusy) {
		t.Fatalf("second start over max-running = %v, want busy", err)
	}
	if _, err := tb.Cancel(context.Background(), c.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := start(t, tb, rpc.StartRequest{FnName: "echo", Timeout: 30}); got.State != rpc.StateSucceeded {
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
		_, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: tt.id})
		if !errors.Is(err, tt.want) {
			t.Errorf("Wait(%q) = %v, want %v", tt.id, err, tt.want)
		}
	}
	if _, err := tb.Start(context.Background(), &rpc.StartRequest{FnName: "nosuch"}); !errors.Is(err, rpc.ErrUnknownFunction) {
		t.Errorf("Start(nosuch) = %v, want unknown_function", err)
	}
}

func TestReleaseAndRetention(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tb := newTable(t, Config{Retention: time.Hour, Now: clock})

	running := start(t, tb, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":60}`)})
	if err := tb.Release(running.ID); !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("Release(running) = %v, want bad_request", err)
	}
	a := start(t, tb, rpc.StartRequest{FnName: "echo", Timeout: 30})
	b := start(t, tb, rpc.StartRequest{FnName: "echo", Timeout: 30, RequestID: "b"})
	if err := tb.Release(a.ID); err != nil {
		t.Fatalf("Release(finished) = %v", err)
	}
	if _, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: a.ID}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("Wait after Release = %v, want unknown_call", err)
	}
	if n := tb.Expire(now.Add(time.Hour - time.Second)); n != 0 {
		t.Errorf("Expire before the retention dropped %d calls, want 0", n)
	}
	if n := tb.Expire(now.Add(time.Hour)); n != 1 {
		t.Errorf("Expire at the retention dropped %d calls, want 1 (the finished, unreleased one)", n)
	}
	if _, err := tb.Wait(context.Background(), &rpc.WaitRequest{ID: b.ID}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("Wait after expiry = %v, want unknown_call", err)
	}
	// Its request_id is free again once the call is gone.
	if c := start(t, tb, rpc.StartRequest{FnName: "echo", Timeout: 30, RequestID: "b"}); c.ID == b.ID {
		t.Errorf("request_id of an expired call answered the expired call")
	}
	if got := wait(t, tb, running.ID, 0); got.State != rpc.StateRunning {
		t.Errorf("running call after Expire = %s, want still running", got.State)
	}
}

func TestShutdownStopsEverything(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{Grace: 300 * time.Millisecond})
	var ids []string
	for _, fn := range []string{"sleep", "ignoreterm", "grandchild"} {
		ids = append(ids, start(t, tb, rpc.StartRequest{FnName: fn, FnArgs: json.RawMessage(`{"seconds":60}`)}).ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tb.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, id := range ids {
		c := wait(t, tb, id, 0)
		if c.State != rpc.StateCancelled {
			t.Errorf("call %s after Shutdown = %s, want cancelled", id, c.State)
		}
		cid, _ := rpc.ParseCallID(id)
		waitGone(t, cid.CPID)
	}
	if _, err := tb.Start(context.Background(), &rpc.StartRequest{FnName: "echo"}); !errors.Is(err, rpc.ErrShuttingDown) {
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
		{fmt.Errorf("starting x: %w", syscall.EACCES), rpc.KindInternal},
	}
	for _, tt := range tests {
		if got := spawnError("f", tt.err); got.Kind != tt.want || !strings.Contains(got.Message, tt.err.Error()) {
			t.Errorf("spawnError(%v) = %v, want kind %s quoting the cause", tt.err, got, tt.want)
		}
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	tb := newTable(t, Config{})
	start(t, tb, rpc.StartRequest{FnName: "echo", Timeout: 30})
	start(t, tb, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":60}`)})
	if running, finished := tb.Counts(); running != 1 || finished != 1 {
		t.Errorf("Counts() = %d running, %d finished; want 1 and 1", running, finished)
	}
}
