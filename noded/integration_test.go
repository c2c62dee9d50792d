package noded_test

// Integration tests of noded as a real process: each test starts its own
// daemon with nodetest (built once, with -race when the tests run with
// it), talks to it over HTTP in the rpc types, and nodetest checks when
// it ends that no process it caused is left running.
//
// Executable functions are the shell scripts in testdata/functions,
// installed in each daemon's functions directory with @STATE@ replaced by
// the node's state directory, where they record their PIDs (pids/) and
// their runs.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestMain(m *testing.M) { nodetest.Main(m) }

// node is a noded under test and an HTTP client of its own.
type node struct {
	*nodetest.Node
	client *http.Client
}

// startNoded starts noded for tb with the given extra flags and every
// script of testdata/functions in its functions directory; nodetest ties
// its life to the test's.
func startNoded(tb testing.TB, flags ...string) *node {
	tb.Helper()
	return startNodedWith(tb, nodetest.Options{Flags: flags})
}

// runNoded runs noded with args to its end and returns its exit status
// and what it wrote to stdout and stderr together.
func runNoded(t *testing.T, args ...string) (status int, out string) {
	t.Helper()
	b, err := exec.Command(nodetest.Noded(t), args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(b)
	}
	if err != nil {
		t.Fatalf("running noded %q: %v", args, err)
	}
	return 0, string(b)
}

// startNodedWith is startNoded with more options.
func startNodedWith(tb testing.TB, opts nodetest.Options) *node {
	tb.Helper()
	opts.FunctionsFrom = filepath.Join("testdata", "functions")
	n := &node{
		Node: nodetest.Start(tb, opts),
		client: &http.Client{
			Timeout: 2 * time.Minute,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 1000,
				DisableCompression:  true,
			},
		},
	}
	// Cleanups run last first: the connections close before noded stops.
	tb.Cleanup(n.client.CloseIdleConnections)
	return n
}

// waitGone fails the test unless pid, which should be dying, has exited
// within 10s (gone, or a zombie nobody reaped).
func waitGone(tb testing.TB, pid int, what string) {
	tb.Helper()
	if !nodetest.AwaitGone(pid, 10*time.Second) {
		tb.Errorf("%s (pid %d) still running 10s after it should have died: %s", what, pid, nodetest.Describe(pid))
	}
}

// answer is one HTTP answer of noded.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// roundTrip sends body (bytes as they are, anything else as JSON) and
// returns the answer. It does not fail the test, so goroutines can use it.
func (d *node) roundTrip(method, path string, body any) (answer, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return answer{}, err
		}
	}
	req, err := http.NewRequest(method, d.URL()+path, bytes.NewReader(raw))
	if err != nil {
		return answer{}, err
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// okCall sends a request that must answer 200 with a value decoded into
// out, and returns an error saying what was sent and what came back.
func (d *node) okCall(method, path string, body, out any) error {
	a, err := d.roundTrip(method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", method, path, show(body), err)
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("%s %s %s: status %d %s, want 200", method, path, show(body), a.status, a.body)
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		return fmt.Errorf("%s %s %s: decoding %s: %w", method, path, show(body), a.body, err)
	}
	return nil
}

func show(body any) string {
	switch b := body.(type) {
	case nil:
		return ""
	case []byte:
		return clip(string(b))
	case string:
		return clip(b)
	}
	raw, _ := json.Marshal(body)
	return clip(string(raw))
}

func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s... (%d bytes)", s[:200], len(s))
	}
	return s
}

func (d *node) start(tb testing.TB, req rpc.StartRequest) *rpc.Call {
	tb.Helper()
	var c rpc.Call
	if err := d.okCall(http.MethodPut, rpc.PathStartFunction, req, &c); err != nil {
		tb.Fatal(err)
	}
	return &c
}

func (d *node) wait(tb testing.TB, req rpc.WaitRequest) *rpc.Call {
	tb.Helper()
	var c rpc.Call
	if err := d.okCall(http.MethodPut, rpc.PathWaitForFunction, req, &c); err != nil {
		tb.Fatal(err)
	}
	return &c
}

func (d *node) cancel(tb testing.TB, id string) *rpc.Call {
	tb.Helper()
	var c rpc.Call
	if err := d.okCall(http.MethodPut, rpc.PathCancelFunction, rpc.IDRequest{ID: id}, &c); err != nil {
		tb.Fatal(err)
	}
	return &c
}

func (d *node) list(tb testing.TB) rpc.ListCallsResponse {
	tb.Helper()
	var l rpc.ListCallsResponse
	if err := d.okCall(http.MethodGet, rpc.PathListCalls, nil, &l); err != nil {
		tb.Fatal(err)
	}
	return l
}

func (d *node) version(tb testing.TB) rpc.VersionResponse {
	tb.Helper()
	var v rpc.VersionResponse
	if err := d.okCall(http.MethodGet, rpc.PathVersion, nil, &v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// finish waits on id, round after round, until the call has finished.
func (d *node) finish(tb testing.TB, id string) *rpc.Call {
	tb.Helper()
	c, err := d.finishErr(id)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (d *node) finishErr(id string) (*rpc.Call, error) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		var c rpc.Call
		if err := d.okCall(http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: id, Timeout: 10}, &c); err != nil {
			return nil, err
		}
		if c.Finished {
			return &c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("call %s still %s after 90s", id, c.State)
		}
	}
}

// requestError sends a request that must fail with status and kind, and
// returns the error and the answer's header.
func (d *node) requestError(tb testing.TB, method, path string, body any, wantStatus int, wantKind rpc.Kind) (*rpc.Error, http.Header) {
	tb.Helper()
	a, err := d.roundTrip(method, path, body)
	if err != nil {
		tb.Fatalf("%s %s %s: %v", method, path, show(body), err)
	}
	var er rpc.ErrorResponse
	if err := json.Unmarshal(a.body, &er); err != nil || er.Error == nil {
		tb.Fatalf("%s %s %s: status %d, body %q is not an error response (%v)", method, path, show(body), a.status, a.body, err)
	}
	if a.status != wantStatus || er.Error.Kind != wantKind {
		tb.Fatalf("%s %s %s: got status %d kind %q (%s), want %d %q", method, path, show(body), a.status, er.Error.Kind, er.Error.Message, wantStatus, wantKind)
	}
	if er.Error.Message == "" {
		tb.Errorf("%s %s %s: %s error without a message", method, path, show(body), wantKind)
	}
	return er.Error, a.header
}

// callPID returns the function process's PID from a call ID.
func callPID(tb testing.TB, id string) int {
	tb.Helper()
	cid, err := rpc.ParseCallID(id)
	if err != nil {
		tb.Fatalf("call ID %q: %v", id, err)
	}
	return cid.CPID
}

// wantState checks a finished call's state and error kind.
func wantState(tb testing.TB, what string, c *rpc.Call, state rpc.State, kind rpc.Kind) {
	tb.Helper()
	if !c.Finished || c.State != state {
		tb.Fatalf("%s: got finished=%v state %q (error %v), want finished %q", what, c.Finished, c.State, c.Error, state)
	}
	var gotKind rpc.Kind
	if c.Error != nil {
		gotKind = c.Error.Kind
	}
	if gotKind != kind {
		tb.Fatalf("%s: got error %v, want kind %q", what, c.Error, kind)
	}
	if c.FinishedAt == nil {
		tb.Errorf("%s: finished call without finished_at", what)
	}
}

func jsonOf(tb testing.TB, v any) json.RawMessage {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func sleepArgs(tb testing.TB, seconds float64) json.RawMessage {
	return jsonOf(tb, backend.SleepArgs{Seconds: &seconds})
}

// TestFireAndForget: timeout 0 answers at once with a running record, and
// WaitForFunction then gets the result; noded logs the start and the end
// with the call ID.
func TestFireAndForget(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	v := d.version(t)

	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 0.3), Timeout: 0})
	if c.Finished || c.State != rpc.StateRunning || c.Result != nil || c.Error != nil {
		t.Fatalf("StartFunction sleep 0.3 timeout 0: got finished=%v state %q result %s error %v, want running and nothing else", c.Finished, c.State, c.Result, c.Error)
	}
	id, err := rpc.ParseCallID(c.ID)
	if err != nil {
		t.Fatalf("StartFunction answered ID %q: %v", c.ID, err)
	}
	if id.PPID != v.PID || id.CPID <= 0 || id.Time.Before(v.StartedAt.Add(-time.Second)) {
		t.Errorf("call ID %q: ppid %d cpid %d time %v, want ppid %d (noded), a cpid, a time after %v", c.ID, id.PPID, id.CPID, id.Time, v.PID, v.StartedAt)
	}
	if c.FnName != "sleep" || c.StartedAt.IsZero() {
		t.Errorf("running record: fn_name %q started_at %v", c.FnName, c.StartedAt)
	}

	got := d.finish(t, c.ID)
	wantState(t, "sleep 0.3", got, rpc.StateSucceeded, "")
	var res backend.SleepResult
	if err := json.Unmarshal(got.Result, &res); err != nil || res.Slept != 0.3 {
		t.Errorf("sleep 0.3 result %s (%v), want slept 0.3", got.Result, err)
	}
	if got.ID != c.ID {
		t.Errorf("WaitForFunction answered ID %q, want %q", got.ID, c.ID)
	}
	if line, ok := d.LogLine(`msg="call started"`, "call_id="+c.ID, "fn=sleep"); !ok {
		t.Errorf("noded logged no call started line with call_id=%s; log:\n%s", c.ID, d.Log())
	} else {
		t.Logf("log: %s", line)
	}
	// noded logs a call's end just after it answers the waiters.
	d.AwaitLogLine(t, `msg="call finished"`, "call_id="+c.ID, "state=succeeded")
}

// TestWaitInRounds: a 1.5 s call waited on 0.3 s at a time answers running
// several times, each after about 0.3 s, then succeeded; log_offset hands
// out every log line exactly once.
func TestWaitInRounds(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 1.5), Timeout: 0})
	var lines []string
	lines = append(lines, c.Log...)
	offset := c.LogOffset
	runningAnswers := 0
	for !c.Finished {
		begin := time.Now()
		c = d.wait(t, rpc.WaitRequest{ID: c.ID, Timeout: 0.3, LogOffset: offset})
		took := time.Since(begin)
		if c.LogOffset < offset || c.LogOffset-offset != len(c.Log) {
			t.Fatalf("WaitForFunction log_offset %d: got %d lines and log_offset %d, want log_offset = %d + lines", offset, len(c.Log), c.LogOffset, offset)
		}
		lines = append(lines, c.Log...)
		offset = c.LogOffset
		if !c.Finished {
			runningAnswers++
			if c.State != rpc.StateRunning {
				t.Fatalf("unfinished answer in state %q", c.State)
			}
			if took < 250*time.Millisecond {
				t.Errorf("WaitForFunction timeout 0.3 answered running after %v, want about 0.3s", took)
			}
		}
		if runningAnswers > 50 {
			t.Fatal("sleep 1.5 still running after 50 rounds of 0.3s")
		}
	}
	wantState(t, "sleep 1.5", c, rpc.StateSucceeded, "")
	if runningAnswers < 2 {
		t.Errorf("got %d running answers to 0.3s waits on a 1.5s sleep, want several", runningAnswers)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=sleeping") || !strings.Contains(lines[0], "call_id="+c.ID) {
		t.Errorf("log lines over all rounds: %q, want exactly the one sleeping line with call_id=%s", lines, c.ID)
	}

	// The whole log again from 0, and nothing past its end.
	all := d.wait(t, rpc.WaitRequest{ID: c.ID, LogOffset: 0})
	if len(all.Log) != 1 || all.LogOffset != 1 {
		t.Errorf("WaitForFunction log_offset 0 after the end: log %q log_offset %d, want 1 line and 1", all.Log, all.LogOffset)
	}
	past := d.wait(t, rpc.WaitRequest{ID: c.ID, LogOffset: 7})
	if len(past.Log) != 0 || past.LogOffset != 1 || past.LogDropped != 0 {
		t.Errorf("WaitForFunction log_offset 7 of 1 line: log %q log_offset %d dropped %d, want none, 1, 0", past.Log, past.LogOffset, past.LogDropped)
	}
	logs := d.start(t, rpc.StartRequest{FnName: "logs", Timeout: 20, LogOffset: 1})
	wantState(t, "logs", logs, rpc.StateSucceeded, "")
	if want := []string{"log line 2", "log line 3"}; !slices.Equal(logs.Log, want) || logs.LogOffset != 3 || string(logs.Result) != "3" {
		t.Errorf("StartFunction logs log_offset 1: log %q log_offset %d result %s, want %q 3 3", logs.Log, logs.LogOffset, logs.Result, want)
	}
}

// TestMaxWaitCapsTimeout: a timeout over --max-wait is cut to it.
func TestMaxWaitCapsTimeout(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-wait", "500ms")
	begin := time.Now()
	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 30), Timeout: 20})
	took := time.Since(begin)
	if c.Finished || took < 400*time.Millisecond || took > 10*time.Second {
		t.Errorf("StartFunction sleep 30 timeout 20 with --max-wait 500ms: finished=%v after %v, want running after about 0.5s", c.Finished, took)
	}
	d.cancel(t, c.ID)
}

// TestCancel: CancelFunction ends the call cancelled and its whole process
// group is gone, including a grandchild that ignores SIGTERM.
func TestCancel(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--shutdown-grace", "2s")

	t.Run("builtin", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), Timeout: 0})
		pid := callPID(t, c.ID)
		got := d.cancel(t, c.ID)
		wantState(t, "cancelled sleep", got, rpc.StateCancelled, rpc.KindCancelled)
		waitGone(t, pid, "cancelled sleep function process")
		if again := d.cancel(t, c.ID); again.State != rpc.StateCancelled {
			t.Errorf("second CancelFunction: state %q, want cancelled still", again.State)
		}
	})
	t.Run("grandchild", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "grandchild", FnArgs: json.RawMessage(`"wait"`), Timeout: 0})
		pid := callPID(t, c.ID)
		d.WaitPIDFile(t, strconv.Itoa(pid))
		gpid := d.WaitPIDFile(t, strconv.Itoa(pid)+".grandchild")
		if !nodetest.Running(gpid) {
			t.Fatalf("grandchild %d not running before the cancel", gpid)
		}
		got := d.cancel(t, c.ID)
		wantState(t, "cancelled grandchild", got, rpc.StateCancelled, rpc.KindCancelled)
		waitGone(t, pid, "cancelled function process")
		waitGone(t, gpid, "grandchild of the cancelled function")
	})
	t.Run("wakes waiters", func(t *testing.T) {
		t.Parallel()
		// The start itself waits 50s; it is in its wait once the call
		// shows up in ListCalls (the table holds a call only once its
		// start is about to wait on it).
		const rid = "cancel-waiters"
		req := rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), RequestID: rid, Timeout: 50}
		type result struct {
			what string
			c    rpc.Call
			err  error
			took time.Duration
		}
		answers := make(chan result, 3)
		ask := func(what, path string, body any) {
			begin := time.Now()
			var r result
			r.err = d.okCall(http.MethodPut, path, body, &r.c)
			r.what, r.took = what, time.Since(begin)
			answers <- r
		}
		go ask("the start", rpc.PathStartFunction, req)
		var id string
		for deadline := time.Now().Add(20 * time.Second); id == ""; {
			for _, s := range d.list(t).Calls {
				if s.RequestID == rid {
					id = s.ID
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("call with request_id %s not listed within 20s", rid)
			}
		}
		// Late waiters get the same answer, whether or not they are
		// already waiting when the cancel lands.
		go ask("a waiter", rpc.PathWaitForFunction, rpc.WaitRequest{ID: id, Timeout: 50})
		go ask("a replayed start", rpc.PathStartFunction, req)
		cancelled := time.Now()
		d.cancel(t, id)
		for range 3 {
			r := <-answers
			switch {
			case r.err != nil:
				t.Error(r.err)
			case r.c.ID != id || r.c.State != rpc.StateCancelled:
				t.Errorf("%s: ID %q state %q, want %q cancelled", r.what, r.c.ID, r.c.State, id)
			}
		}
		if took := time.Since(cancelled); took > 20*time.Second {
			t.Errorf("waiters answered %v after the cancel, want at once", took)
		}
	})
	t.Run("finished", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`"x"`), Timeout: 20})
		wantState(t, "echo", c, rpc.StateSucceeded, "")
		got := d.cancel(t, c.ID)
		wantState(t, "CancelFunction of a finished echo", got, rpc.StateSucceeded, "")
	})
}

// TestAbortAfter: a call that runs past abort_after ends aborted, whether
// it stops on SIGTERM (sleep) or has to be killed (hang).
func TestAbortAfter(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--shutdown-grace", "500ms")

	t.Run("sleep", func(t *testing.T) {
		t.Parallel()
		begin := time.Now()
		c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), AbortAfter: 0.3, Timeout: 30})
		took := time.Since(begin)
		wantState(t, "sleep 60 abort_after 0.3", c, rpc.StateAborted, rpc.KindAborted)
		if took > 10*time.Second {
			t.Errorf("sleep 60 abort_after 0.3 took %v to end", took)
		}
		waitGone(t, callPID(t, c.ID), "aborted sleep function process")
	})
	t.Run("hang", func(t *testing.T) {
		t.Parallel()
		// The abort's SIGTERM must find hang's trap set, or hang dies of
		// it: the test sees hang's PID file, which it writes once the
		// trap is set, before the abort is due. On a machine so loaded
		// that hang took longer than that to start, the call tells
		// nothing; it is tried again with twice the time.
		var c *rpc.Call
		for abortAfter := 2 * time.Second; ; abortAfter *= 2 {
			begin := time.Now()
			c = d.start(t, rpc.StartRequest{FnName: "hang", AbortAfter: abortAfter.Seconds(), Timeout: 0})
			d.WaitPIDFile(t, strconv.Itoa(callPID(t, c.ID)))
			ready := time.Since(begin)
			if ready < abortAfter {
				break
			}
			if abortAfter >= 32*time.Second {
				t.Fatalf("hang set its SIGTERM trap %v after its start, past abort_after %v: the test cannot tell the abort's SIGKILL from a SIGTERM that came first", ready, abortAfter)
			}
			t.Logf("hang set its SIGTERM trap %v after its start, past abort_after %v; trying again", ready, abortAfter)
			d.finish(t, c.ID)
		}
		c = d.finish(t, c.ID)
		wantState(t, "hang aborted", c, rpc.StateAborted, rpc.KindAborted)
		if c.Error.Signal != "SIGKILL" || c.Error.ExitCode != nil {
			t.Errorf("hang ignoring SIGTERM, aborted: signal %q exit code %v, want SIGKILL after the grace", c.Error.Signal, c.Error.ExitCode)
		}
		waitGone(t, callPID(t, c.ID), "aborted hang function process")
	})
}

// TestRequestIDReplay: a start repeated with the same request_id answers
// the first call and runs the function once, even when the repeats race.
func TestRequestIDReplay(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	runs := func() int {
		b, _ := os.ReadFile(filepath.Join(d.State(), "runs"))
		return strings.Count(string(b), "run\n")
	}

	first := d.start(t, rpc.StartRequest{FnName: "count", Timeout: 20, RequestID: "replay-1"})
	wantState(t, "count", first, rpc.StateSucceeded, "")
	second := d.start(t, rpc.StartRequest{FnName: "count", Timeout: 20, RequestID: "replay-1"})
	if second.ID != first.ID || second.State != rpc.StateSucceeded || second.RequestID != "replay-1" {
		t.Errorf("repeated start with request_id replay-1: ID %q state %q request_id %q, want the first call %q succeeded", second.ID, second.State, second.RequestID, first.ID)
	}
	if n := runs(); n != 1 {
		t.Errorf("count ran %d times for two starts with one request_id, want 1", n)
	}

	// Twenty starts at once with a new request_id: one run, one ID.
	const racers = 20
	ids := make([]string, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			var c rpc.Call
			errs[i] = d.okCall(http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "count", Timeout: 20, RequestID: "replay-2"}, &c)
			ids[i] = c.ID
		})
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("racing starts with request_id replay-2 answered IDs %q and %q, want one", ids[0], ids[i])
		}
	}
	if ids[0] == first.ID {
		t.Errorf("request_id replay-2 answered the call of replay-1")
	}
	if n := runs(); n != 2 {
		t.Errorf("count ran %d times in all, want 2 (one per request_id)", n)
	}

	// The same request_id for another function is a mistake of the client.
	d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", RequestID: "replay-1"}, http.StatusBadRequest, rpc.KindBadRequest)
}

// TestLostAfterRestart: a call of a daemon that was SIGKILLed answers lost
// (410) on the next daemon, and its function process died with the daemon
// through the parent-death signal.
func TestLostAfterRestart(t *testing.T) {
	t.Parallel()
	first := startNoded(t)
	firstBoot := first.version(t).BootID
	c := first.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 300), Timeout: 0})
	pid := callPID(t, c.ID)
	if !nodetest.Running(pid) || !nodetest.HasEnv(pid, first.Marker()) {
		t.Fatalf("function process %d of call %s not running with the daemon's marker: %s", pid, c.ID, nodetest.Describe(pid))
	}
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "function process of a SIGKILLed noded (parent-death signal)")

	second := startNoded(t)
	e, _ := second.requestError(t, http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: c.ID, Timeout: 1}, http.StatusGone, rpc.KindLost)
	t.Logf("lost: %s", e.Message)
	second.requestError(t, http.MethodPut, rpc.PathCancelFunction, rpc.IDRequest{ID: c.ID}, http.StatusGone, rpc.KindLost)
	if v := second.version(t); v.BootID == firstBoot {
		t.Errorf("the restarted noded has the boot id %q of the one before", v.BootID)
	}
}

// TestCrashedDaemonLeavesNoGrandchild: when noded dies by SIGKILL, its
// function process dies with it (parent-death signal), and a grandchild,
// which no parent-death signal reaches, is killed at the latest when the
// next noded starts on the node: it kills the call cgroups of daemons that
// are gone. (Under systemd the unit's cgroup is killed at once.)
func TestCrashedDaemonLeavesNoGrandchild(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := d.start(t, rpc.StartRequest{FnName: "grandchild", FnArgs: json.RawMessage(`"wait"`), Timeout: 0})
	pid := callPID(t, c.ID)
	d.WaitPIDFile(t, strconv.Itoa(pid))
	gpid := d.WaitPIDFile(t, strconv.Itoa(pid)+".grandchild")
	contained := inCallCgroup(gpid)
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "function process of a SIGKILLed noded (parent-death signal)")
	if !contained {
		// Process groups alone cannot reach it once noded is gone; the
		// leftover check would fail on it, so kill it here.
		syscall.Kill(gpid, syscall.SIGKILL)
		t.Skipf("the grandchild is in no call cgroup (cgroup v2 not writable here: %s), so only a restart under systemd can kill it", cgroupOf(gpid))
	}
	t.Logf("after the crash, before a restart: grandchild alive=%v", nodetest.Running(gpid))
	startNoded(t).version(t) // the restart, serving (TestSIGTERMOnceReady covers a stop before that)
	waitGone(t, gpid, "grandchild of a function of a SIGKILLed noded, after the next noded started")
}

// TestEscapedGrandchild: a grandchild that left the process group and the
// session (setsid) still dies with its call, on cancel and when the call
// ends, where noded contains calls in cgroups.
func TestEscapedGrandchild(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--shutdown-grace", "1s")
	for _, mode := range []string{"wait", "exit"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := d.start(t, rpc.StartRequest{FnName: "escape", FnArgs: jsonOf(t, mode), Timeout: 0})
			pid := callPID(t, c.ID)
			gpid := d.WaitPIDFile(t, strconv.Itoa(pid)+".grandchild")
			if !inCallCgroup(gpid) {
				syscall.Kill(gpid, syscall.SIGKILL)
				t.Skipf("the grandchild is in no call cgroup (%s): process groups cannot reach what left them", cgroupOf(gpid))
			}
			if pg, err := syscall.Getpgid(gpid); err != nil || pg == pid {
				t.Fatalf("grandchild %d in process group %d (%v), want one of its own, not the function's %d", gpid, pg, err, pid)
			}
			var got *rpc.Call
			if mode == "wait" {
				got = d.cancel(t, c.ID)
				wantState(t, "cancelled escape", got, rpc.StateCancelled, rpc.KindCancelled)
			} else {
				got = d.finish(t, c.ID)
				wantState(t, "escape exit", got, rpc.StateSucceeded, "")
			}
			waitGone(t, gpid, "grandchild that left the process group, after its call ended")
		})
	}
}

// cgroupOf returns pid's cgroup v2 path.
func cgroupOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p
		}
	}
	return ""
}

// inCallCgroup reports whether pid runs in a call cgroup of noded.
func inCallCgroup(pid int) bool {
	return strings.Contains(cgroupOf(pid), "/noderpc-calls/")
}

// TestRequestErrors: requests that cannot be served answer their kind and
// HTTP status, with an error body.
func TestRequestErrors(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-request", "4096")
	v := d.version(t)
	unknownID := rpc.NewCallID(v.PID, 1, time.Now().Add(time.Second)).String()
	oldID := rpc.NewCallID(v.PID, 1, v.StartedAt.Add(-time.Hour)).String()

	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantKind   rpc.Kind
	}{
		{"malformed JSON", http.MethodPut, rpc.PathStartFunction, `{"fn_name": "echo",`, 400, rpc.KindBadRequest},
		{"unknown field", http.MethodPut, rpc.PathStartFunction, `{"fn_name": "echo", "timeout": 0, "colour": "red"}`, 400, rpc.KindBadRequest},
		{"wrong type", http.MethodPut, rpc.PathStartFunction, `{"fn_name": "echo", "timeout": "5"}`, 400, rpc.KindBadRequest},
		{"trailing data", http.MethodPut, rpc.PathStartFunction, `{"fn_name": "echo"} {}`, 400, rpc.KindBadRequest},
		{"empty body", http.MethodPut, rpc.PathStartFunction, ``, 400, rpc.KindBadRequest},
		{"no fn_name", http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{Timeout: 1}, 400, rpc.KindBadRequest},
		{"negative timeout", http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", Timeout: -1}, 400, rpc.KindBadRequest},
		{"negative abort_after", http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", AbortAfter: -1}, 400, rpc.KindBadRequest},
		{"function name with ..", http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "../../bin/sh"}, 400, rpc.KindBadRequest},
		{"unknown function", http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "no_such_function"}, 404, rpc.KindUnknownFunction},
		{"GET StartFunction", http.MethodGet, rpc.PathStartFunction, nil, 400, rpc.KindBadRequest},
		{"negative wait timeout", http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: unknownID, Timeout: -1}, 400, rpc.KindBadRequest},
		{"wait without id", http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{Timeout: 1}, 400, rpc.KindBadRequest},
		{"wait unknown id", http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: unknownID}, 404, rpc.KindUnknownCall},
		{"wait malformed id", http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: "not-an-id"}, 400, rpc.KindBadRequest},
		{"wait id of an earlier daemon", http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: oldID}, 410, rpc.KindLost},
		{"cancel unknown id", http.MethodPut, rpc.PathCancelFunction, rpc.IDRequest{ID: unknownID}, 404, rpc.KindUnknownCall},
		{"cancel malformed id", http.MethodPut, rpc.PathCancelFunction, rpc.IDRequest{ID: "1:2:3"}, 400, rpc.KindBadRequest},
		{"release unknown id", http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: unknownID}, 404, rpc.KindUnknownCall},
		{"release without id", http.MethodPut, rpc.PathReleaseFunction, `{}`, 400, rpc.KindBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.requestError(t, tt.method, tt.path, tt.body, tt.wantStatus, tt.wantKind)
		})
	}
	// A body over --max-request is refused from its declared length,
	// before a byte of it is sent; one without a declared length once it
	// has sent too much.
	t.Run("oversize body, declared", func(t *testing.T) {
		d.rawTooLarge(t, "Content-Length: 104857600\r\n\r\n")
	})
	t.Run("oversize body, chunked", func(t *testing.T) {
		d.rawTooLarge(t, fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", 8192, strings.Repeat(" ", 8192)))
	})

	// The daemon still serves after all that.
	if c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`[1,2]`), Timeout: 20}); string(c.Result) != "[1,2]" {
		t.Errorf("echo [1,2] after the bad requests: %s %v", c.Result, c.Error)
	}
}

// rawTooLarge sends a StartFunction with the given body headers and body
// over a connection of its own and expects 413 too_large.
func (d *node) rawTooLarge(tb testing.TB, rest string) {
	tb.Helper()
	conn, err := net.Dial("tcp", d.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := "PUT " + rpc.PathStartFunction + " HTTP/1.1\r\nHost: noded\r\nContent-Type: application/json\r\n" + rest
	if _, err := io.WriteString(conn, req); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("PUT %s with %q: reading the answer: %v", rpc.PathStartFunction, clip(rest), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var er rpc.ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil || er.Error == nil || resp.StatusCode != http.StatusRequestEntityTooLarge || er.Error.Kind != rpc.KindTooLarge {
		tb.Fatalf("PUT %s with %q: status %d %s, want 413 too_large", rpc.PathStartFunction, clip(rest), resp.StatusCode, body)
	}
	if !strings.Contains(er.Error.Message, "--max-request") || !strings.Contains(er.Error.Message, "bytes") {
		tb.Errorf("PUT %s with %q: %q, want the message to name the limit and the flag that sets it", rpc.PathStartFunction, clip(rest), er.Error.Message)
	}
}

// TestBusy: past --max-running a start answers 503 busy with Retry-After,
// and a finished call frees its place.
func TestBusy(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-running", "2")
	a := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), RequestID: "busy-a"})
	b := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})
	_, h := d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo"}, http.StatusServiceUnavailable, rpc.KindBusy)
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("busy answer's Retry-After %q, want a number of seconds > 0", h.Get("Retry-After"))
	}
	// A request_id replay of a running call is not a new call: not busy.
	replay := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), RequestID: "busy-a"})
	if replay.ID != a.ID {
		t.Errorf("replay of request_id busy-a at --max-running: ID %q, want the running call %q", replay.ID, a.ID)
	}
	d.cancel(t, a.ID)
	c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`"after"`), Timeout: 20})
	wantState(t, "echo after a cancel freed a place", c, rpc.StateSucceeded, "")
	d.cancel(t, b.ID)
}

// TestChildFailures: how function processes that crash, die of a signal,
// write garbage or flood their stdout end, as finished calls.
func TestChildFailures(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-result", "4194304")

	t.Run("exit 3", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "exit3", Timeout: 20})
		wantState(t, "exit3", c, rpc.StateFailed, rpc.KindFunctionFailed)
		if c.Error.ExitCode == nil || *c.Error.ExitCode != 3 || c.Error.Signal != "" {
			t.Errorf("exit3: exit code %v signal %q, want 3 and no signal", c.Error.ExitCode, c.Error.Signal)
		}
		if !strings.Contains(c.Error.Message, "exit3: giving up") || !slices.Equal(c.Log, []string{"exit3: giving up"}) {
			t.Errorf("exit3: message %q log %q, want its last log line quoted and logged", c.Error.Message, c.Log)
		}
	})
	t.Run("signal", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "selfkill", Timeout: 20})
		wantState(t, "selfkill", c, rpc.StateFailed, rpc.KindFunctionFailed)
		if c.Error.Signal != "SIGUSR1" || c.Error.ExitCode != nil {
			t.Errorf("selfkill: signal %q exit code %v, want SIGUSR1 and no exit code", c.Error.Signal, c.Error.ExitCode)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "garbage", Timeout: 20})
		wantState(t, "garbage", c, rpc.StateFailed, rpc.KindProtocolError)
	})
	t.Run("executable echo", func(t *testing.T) {
		t.Parallel()
		args := json.RawMessage(`{"a":[1,2,{"b":null}],"s":"é\n"}`)
		c := d.start(t, rpc.StartRequest{FnName: "cat", FnArgs: args, Timeout: 20})
		wantState(t, "cat", c, rpc.StateSucceeded, "")
		if !bytes.Equal(c.Result, args) {
			t.Errorf("cat %s: result %s, want the args back", args, c.Result)
		}
	})
	t.Run("100 MB of result", func(t *testing.T) {
		t.Parallel()
		// A noded of its own, built without the race detector, whose
		// shadow memory would swamp what is measured.
		d := startNodedWith(t, nodetest.Options{NoRace: true, Flags: []string{"--max-result", "4194304"}})
		c := d.start(t, rpc.StartRequest{FnName: "flood", Timeout: 30})
		wantState(t, "flood", c, rpc.StateFailed, rpc.KindResultTooLarge)
		waitGone(t, callPID(t, c.ID), "flood function process")
		// noded read at most --max-result (4 MiB) of the 100 MB: its peak
		// RSS stays far below what holding it all would take.
		if hwm := d.VmHWM(t); hwm > 64<<20 {
			t.Errorf("noded's peak RSS is %d MiB after a 100 MB result with --max-result 4MiB, want < 64 MiB", hwm>>20)
		} else {
			t.Logf("noded peak RSS after the flood: %d MiB", hwm>>20)
		}
	})
	t.Run("leftover grandchild", func(t *testing.T) {
		t.Parallel()
		c := d.start(t, rpc.StartRequest{FnName: "grandchild", FnArgs: json.RawMessage(`"exit"`), Timeout: 20})
		wantState(t, "grandchild exit", c, rpc.StateSucceeded, "")
		pid := callPID(t, c.ID)
		gpid := d.WaitPIDFile(t, strconv.Itoa(pid)+".grandchild")
		waitGone(t, gpid, "grandchild left behind by a finished function")
	})
}

// TestLargeArgs: megabytes of fn_args go in and come back out through both
// kinds of function, with no deadlock between noded writing stdin and
// reading stdout.
func TestLargeArgs(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	args := jsonOf(t, strings.Repeat("0123456789abcdef", 1<<17)) // 2 MiB
	for _, fn := range []string{"echo", "cat"} {
		t.Run(fn, func(t *testing.T) {
			t.Parallel()
			c := d.start(t, rpc.StartRequest{FnName: fn, FnArgs: args, Timeout: 30})
			wantState(t, fn+" of 2 MiB", c, rpc.StateSucceeded, "")
			if !bytes.Equal(c.Result, args) {
				t.Errorf("%s of %d bytes: result of %d bytes differs", fn, len(args), len(c.Result))
			}
		})
	}
}

// TestMaxResultBoundary: --max-result bounds the result itself: a result
// of exactly the limit is delivered, one byte more fails the call, for Go
// and executable functions alike.
func TestMaxResultBoundary(t *testing.T) {
	t.Parallel()
	const limit = 64
	d := startNoded(t, "--max-result", strconv.Itoa(limit))
	atLimit := jsonOf(t, strings.Repeat("a", limit-2)) // the quotes make it 64 bytes
	overLimit := jsonOf(t, strings.Repeat("a", limit-1))
	for _, fn := range []string{"echo", "cat"} {
		t.Run(fn, func(t *testing.T) {
			t.Parallel()
			c := d.start(t, rpc.StartRequest{FnName: fn, FnArgs: atLimit, Timeout: 20})
			wantState(t, fmt.Sprintf("%s of a %d-byte result with --max-result %d", fn, len(atLimit), limit), c, rpc.StateSucceeded, "")
			c = d.start(t, rpc.StartRequest{FnName: fn, FnArgs: overLimit, Timeout: 20})
			wantState(t, fmt.Sprintf("%s of a %d-byte result with --max-result %d", fn, len(overLimit), limit), c, rpc.StateFailed, rpc.KindResultTooLarge)
		})
	}
}

// TestEchoEscapes: echo gives back what it was given, as JSON values,
// whatever escapes it holds.
func TestEchoEscapes(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	for _, args := range []string{
		`"<tag> & \u2028 \u0000 \"quoted\" \\ é 日本"`,
		`{"nested":{"a":[true,false,null,1.5e300,-0]},"":""}`,
		`"` + strings.Repeat(`\n`, 1000) + `"`,
	} {
		c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(args), Timeout: 20})
		wantState(t, "echo "+clip(args), c, rpc.StateSucceeded, "")
		var want, got any
		if err := json.Unmarshal([]byte(args), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c.Result, &got); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("echo %s: result %s (%v), want the same value", clip(args), clip(string(c.Result)), err)
		}
	}
}

// TestLogTail: past --max-log-lines only the last lines are held, a wait
// from an older offset learns how many it missed, and an overlong line is
// cut.
func TestLogTail(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-log-lines", "5")
	c := d.start(t, rpc.StartRequest{FnName: "manylogs", Timeout: 20})
	wantState(t, "manylogs", c, rpc.StateSucceeded, "")
	if c.LogOffset != 21 || c.LogDropped != 16 || len(c.Log) != 5 {
		t.Fatalf("manylogs with --max-log-lines 5, from offset 0: log_offset %d log_dropped %d %d lines, want 21 16 5", c.LogOffset, c.LogDropped, len(c.Log))
	}
	if c.Log[0] != "log line 17" || c.Log[3] != "log line 20" {
		t.Errorf("manylogs log tail %q, want lines 17 to 20 then the long one", c.Log[:4])
	}
	if long := c.Log[4]; len(long) > 4200 || !strings.HasPrefix(long, "xxxx") || !strings.HasSuffix(long, "[line truncated]") {
		t.Errorf("10000-byte log line held as %d bytes ending %q, want it cut near 4 KiB and marked", len(long), long[max(0, len(long)-30):])
	}
	w := d.wait(t, rpc.WaitRequest{ID: c.ID, LogOffset: 18})
	if w.LogDropped != 0 || !slices.Equal(w.Log[:2], []string{"log line 19", "log line 20"}) || len(w.Log) != 3 {
		t.Errorf("WaitForFunction log_offset 18: log %q dropped %d, want lines 19, 20, the long one and none dropped", w.Log, w.LogDropped)
	}
}

// TestRetention: a finished call nobody released is dropped after
// --retention, and not before.
func TestRetention(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--retention", "1s")
	c := d.start(t, rpc.StartRequest{FnName: "echo", Timeout: 20})
	wantState(t, "echo", c, rpc.StateSucceeded, "")
	deadline := time.Now().Add(15 * time.Second)
	for {
		a, err := d.roundTrip(http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: c.ID})
		if err != nil {
			t.Fatal(err)
		}
		if a.status == http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("call %s still held 15s after it finished, with --retention 1s", c.ID)
			}
			time.Sleep(50 * time.Millisecond) // polling for the janitor, which has no event to wait on
			continue
		}
		gone := time.Now()
		var er rpc.ErrorResponse
		if err := json.Unmarshal(a.body, &er); err != nil || a.status != http.StatusNotFound || er.Error == nil || er.Error.Kind != rpc.KindUnknownCall {
			t.Fatalf("WaitForFunction on an expired call: status %d %s, want 404 unknown_call", a.status, a.body)
		}
		if held := gone.Sub(*c.FinishedAt); held < time.Second {
			t.Errorf("call dropped %v after it finished, before --retention 1s", held)
		}
		return
	}
}

// TestBusyFreedAtOnce: a call whose answer says it finished has given
// back its place: clients that each run one call at a time, as many as
// --max-running, are never told busy.
func TestBusyFreedAtOnce(t *testing.T) {
	t.Parallel()
	const clients, calls = 4, 60
	d := startNoded(t, "--max-running", strconv.Itoa(clients))
	errs := make(chan error, clients)
	for n := range clients {
		go func() {
			for i := range calls {
				var c rpc.Call
				req := rpc.StartRequest{FnName: "echo", FnArgs: jsonOf(t, n*calls+i), Timeout: 20}
				if err := d.okCall(http.MethodPut, rpc.PathStartFunction, req, &c); err != nil {
					errs <- fmt.Errorf("client %d, call %d, each started after the client's previous call finished: %w", n, i, err)
					return
				}
				if c.State != rpc.StateSucceeded {
					errs <- fmt.Errorf("client %d, call %d: state %q error %v", n, i, c.State, c.Error)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestInterrupt: SIGINT stops noded like SIGTERM.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--shutdown-grace", "2s")
	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})
	if err := d.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(30 * time.Second); err != nil {
		t.Errorf("noded exited with %v after SIGINT, want status 0", err)
	}
	if pid := callPID(t, c.ID); nodetest.Running(pid) {
		t.Errorf("function process %d alive after noded exited on SIGINT", pid)
	}
}

// TestSIGTERMOnceReady: noded is ready when it has written --addr-file (or
// told systemd READY=1); a SIGTERM from then on is a clean shutdown, exit
// status 0, never death by the signal's default action.
func TestSIGTERMOnceReady(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		d := startNoded(t)
		if err := d.Stop(); err != nil {
			t.Errorf("noded %d: SIGTERM right after it wrote --addr-file: %v, want exit status 0", i, err)
		}
	}
}

// TestCommandLine: --version, --help, and the command lines noded refuses.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string // in stdout and stderr together
	}{
		{"version", []string{"--version"}, 0, fmt.Sprintf("noded %s (protocol %d)", rpc.Version, rpc.ProtocolVersion)},
		{"help", []string{"--help"}, 0, "-shutdown-grace"},
		{"unknown flag", []string{"--no-such-flag"}, 2, "no-such-flag"},
		{"no --insecure", []string{"--listen", "127.0.0.1:0"}, 2, "--insecure"},
		{"not loopback", []string{"--insecure", "--listen", "0.0.0.0:0"}, 2, "loopback"},
		{"bad max-running", []string{"--insecure", "--listen", "127.0.0.1:0", "--max-running", "0"}, 2, "--max-running"},
		{"arguments", []string{"--insecure", "extra"}, 2, "extra"},
		{"bad integer", []string{"--insecure", "--max-running", "many"}, 2, "-max-running"},
		{"bad duration", []string{"--insecure", "--max-wait", "5"}, 2, "-max-wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, out := runNoded(t, tt.args...)
			if status != tt.wantStatus || !strings.Contains(out, tt.wantOut) {
				t.Errorf("noded %q: status %d output:\n%s\nwant status %d and %q in the output", tt.args, status, out, tt.wantStatus, tt.wantOut)
			}
			// A refused command line says what is wrong in one line and
			// where the flags are, without the whole usage around it.
			if tt.wantStatus == 2 && (strings.Contains(out, "Usage:") || strings.Count(out, "\n") > 2 || !strings.Contains(out, "Run noded --help")) {
				t.Errorf("noded %q printed:\n%s\nwant one line saying what is wrong and a hint to run noded --help", tt.args, out)
			}
		})
	}
	// --help documents the flags an operator reaches for first.
	out, _ := exec.Command(nodetest.Noded(t), "--help").CombinedOutput()
	for _, flag := range []string{"listen", "insecure", "functions-dir", "max-running", "max-wait", "retention", "shutdown-grace", "log-format", "version", "max-request", "max-result"} {
		if !strings.Contains(string(out), "-"+flag+" ") && !strings.Contains(string(out), "-"+flag+"\n") {
			t.Errorf("noded --help does not document --%s", flag)
		}
	}
}

// TestFloodDefaultLimit: with the default --max-result a 100 MB result
// fails the call and noded's memory stays bounded. noded is built
// without the race detector, whose shadow memory would swamp what is
// measured.
func TestFloodDefaultLimit(t *testing.T) {
	t.Parallel()
	d := startNodedWith(t, nodetest.Options{NoRace: true})
	c := d.start(t, rpc.StartRequest{FnName: "flood", Timeout: 30})
	wantState(t, "flood", c, rpc.StateFailed, rpc.KindResultTooLarge)
	hwm := d.VmHWM(t)
	t.Logf("noded peak RSS after the flood with the default --max-result: %d MiB", hwm>>20)
	if hwm > 100<<20 {
		t.Errorf("noded's peak RSS is %d MiB after a 100 MB result, want < 100 MiB (it holds at most 16 MiB of it)", hwm>>20)
	}
}

// TestShutdown: SIGTERM with running calls refuses new starts with
// shutting_down during the grace, answers the waiters, SIGKILLs what
// ignores SIGTERM once the grace is over, and exits 0 leaving nothing.
func TestShutdown(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--shutdown-grace", "3s")
	sleep := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 300)})
	hang := d.start(t, rpc.StartRequest{FnName: "hang"})
	gc := d.start(t, rpc.StartRequest{FnName: "grandchild", FnArgs: json.RawMessage(`"wait"`)})
	hangPID := d.WaitPIDFile(t, strconv.Itoa(callPID(t, hang.ID)))
	gcPID := d.WaitPIDFile(t, strconv.Itoa(callPID(t, gc.ID)))
	gcGrandPID := d.WaitPIDFile(t, strconv.Itoa(callPID(t, gc.ID))+".grandchild")
	sleepPID := callPID(t, sleep.ID)

	// Everything below noded carries its marker: the leftover check sees it.
	marked := nodetest.ProcessesWithEnv(d.Marker())
	for _, pid := range []int{d.PID(), sleepPID, hangPID, gcPID, gcGrandPID} {
		if !slices.Contains(marked, pid) {
			t.Fatalf("process %d (%s) does not carry the marker: the leftover check would miss it", pid, nodetest.Describe(pid))
		}
	}

	type waited struct {
		c   rpc.Call
		err error
	}
	waiter := make(chan waited, 1)
	go func() {
		var w waited
		w.err = d.okCall(http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: sleep.ID, Timeout: 60}, &w.c)
		waiter <- w
	}()

	begin := time.Now()
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Until noded has handled the signal a start may still run; it must
	// then be stopped with the rest. Soon every start is refused.
	var late []string
	for {
		a, err := d.roundTrip(http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo"})
		if err != nil {
			t.Fatalf("StartFunction during the shutdown grace: %v", err)
		}
		if a.status == http.StatusOK {
			var c rpc.Call
			json.Unmarshal(a.body, &c)
			late = append(late, c.ID)
			continue
		}
		var er rpc.ErrorResponse
		if err := json.Unmarshal(a.body, &er); err != nil || er.Error == nil || a.status != http.StatusServiceUnavailable || er.Error.Kind != rpc.KindShuttingDown {
			t.Fatalf("StartFunction during the shutdown grace: status %d %s, want 503 shutting_down", a.status, a.body)
		}
		break
	}
	// hang ignores SIGTERM and is SIGKILLed only once the grace is over:
	// while it lives, the refusal came within the grace.
	if !slices.Contains(nodetest.ProcessesWithEnv(d.Marker()), hangPID) {
		t.Errorf("starts were refused only after hang (pid %d) was killed: not within the 3s grace", hangPID)
	}

	w := <-waiter
	if w.err != nil {
		t.Errorf("WaitForFunction on sleep across the shutdown: %v", w.err)
	} else {
		wantState(t, "sleep waited on across SIGTERM", &w.c, rpc.StateCancelled, rpc.KindCancelled)
	}

	if err := d.Wait(30 * time.Second); err != nil {
		t.Errorf("noded exited with %v after SIGTERM, want status 0", err)
	}
	if took := time.Since(begin); took < 2500*time.Millisecond {
		t.Errorf("noded exited %v after SIGTERM while hang ignores SIGTERM, want after the 3s grace", took)
	}
	for _, p := range []struct {
		pid  int
		what string
	}{{sleepPID, "sleep"}, {hangPID, "hang (ignores SIGTERM)"}, {gcPID, "grandchild's parent"}, {gcGrandPID, "grandchild ignoring SIGTERM"}} {
		if nodetest.Running(p.pid) {
			t.Errorf("%s (pid %d) alive after noded exited: %s", p.what, p.pid, nodetest.Describe(p.pid))
		}
	}
	for _, want := range []string{"shutting down: stopping every function", "noded stopped"} {
		if _, ok := d.LogLine(want); !ok {
			t.Errorf("noded log has no %q line", want)
		}
	}
	for _, id := range append([]string{sleep.ID, hang.ID}, late...) {
		if _, ok := d.LogLine(`msg="call finished"`, "call_id="+id); !ok {
			t.Errorf("noded logged no end of call %s", id)
		}
	}
}

// TestConcurrentCalls: 500 echo calls at once, each with its own args, all
// answered with their own result.
func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-running", "1000")
	const n = 500
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			args := jsonOf(t, fmt.Sprintf("call %d of %s", i, d.Marker()))
			var c rpc.Call
			if err := d.okCall(http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", FnArgs: args, Timeout: 30}, &c); err != nil {
				errs <- err
				return
			}
			if !c.Finished {
				got, err := d.finishErr(c.ID)
				if err != nil {
					errs <- err
					return
				}
				c = *got
			}
			if c.State != rpc.StateSucceeded || !bytes.Equal(c.Result, args) {
				errs <- fmt.Errorf("echo %s: state %q result %s error %v, want succeeded with the args", args, c.State, c.Result, c.Error)
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 10 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent echo calls went wrong", failed, n)
	}
	l := d.list(t)
	if len(l.Calls) != n {
		t.Errorf("ListCalls after %d calls holds %d", n, len(l.Calls))
	}
}

// TestListReleaseVersion: ListCalls shows the calls held, with state;
// a released call is gone; Version describes this daemon.
func TestListReleaseVersion(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	v := d.version(t)
	if v.Version != rpc.Version || v.Protocol != rpc.ProtocolVersion || v.PID != d.PID() || v.BootID == "" || v.StartedAt.IsZero() {
		t.Errorf("Version: %+v, want version %s protocol %d pid %d, a boot id and start time", v, rpc.Version, rpc.ProtocolVersion, d.PID())
	}
	if again := d.version(t); again.BootID != v.BootID {
		t.Errorf("boot id changed between two Version calls of one daemon: %q then %q", v.BootID, again.BootID)
	}

	done := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20, RequestID: "listed"})
	wantState(t, "echo", done, rpc.StateSucceeded, "")
	failed := d.start(t, rpc.StartRequest{FnName: "exit3", Timeout: 20})
	wantState(t, "exit3", failed, rpc.StateFailed, rpc.KindFunctionFailed)
	running := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})

	want := map[string]rpc.CallSummary{
		done.ID:    {FnName: "echo", State: rpc.StateSucceeded, RequestID: "listed"},
		failed.ID:  {FnName: "exit3", State: rpc.StateFailed, ErrorKind: rpc.KindFunctionFailed},
		running.ID: {FnName: "sleep", State: rpc.StateRunning},
	}
	l := d.list(t)
	if len(l.Calls) != len(want) {
		t.Errorf("ListCalls holds %d calls, want %d: %+v", len(l.Calls), len(want), l.Calls)
	}
	for _, s := range l.Calls {
		w, ok := want[s.ID]
		if !ok {
			t.Errorf("ListCalls lists unknown call %+v", s)
			continue
		}
		if s.FnName != w.FnName || s.State != w.State || s.RequestID != w.RequestID || s.ErrorKind != w.ErrorKind || s.StartedAt.IsZero() || (s.FinishedAt != nil) != s.State.Finished() {
			t.Errorf("ListCalls entry %+v, want %+v with times", s, w)
		}
	}

	// A running call cannot be released; a finished one can, once.
	d.requestError(t, http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: running.ID}, http.StatusBadRequest, rpc.KindBadRequest)
	a, err := d.roundTrip(http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: done.ID})
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("ReleaseFunction %s: %v %d %s", done.ID, err, a.status, a.body)
	}
	d.requestError(t, http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: done.ID}, http.StatusNotFound, rpc.KindUnknownCall)
	d.requestError(t, http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: done.ID}, http.StatusNotFound, rpc.KindUnknownCall)
	// Released, its request_id starts a new call.
	again := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`2`), Timeout: 20, RequestID: "listed"})
	if again.ID == done.ID || string(again.Result) != "2" {
		t.Errorf("start with the request_id of a released call: ID %q result %s, want a new call answering 2", again.ID, again.Result)
	}
	for _, s := range d.list(t).Calls {
		if s.ID == done.ID {
			t.Errorf("ListCalls still lists released call %s", done.ID)
		}
	}
	d.cancel(t, running.ID)
}
