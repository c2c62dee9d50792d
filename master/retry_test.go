package master

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// fakeClock is a clock whose Sleep returns at once, moving time on, so
// back-off is tested without sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

var _ clock = (*fakeClock)(nil)

// request is one request a fakeTransport saw.
type request struct {
	method, path string
	body         []byte
	deadline     time.Time
}

// fakeTransport answers with a function, and records what it was sent.
type fakeTransport struct {
	mu   sync.Mutex
	seen []request
	rt   func(n int, r request) (answer, error) // n counts requests from 1
}

func (f *fakeTransport) roundTrip(ctx context.Context, method, path string, body []byte, deadline time.Time) (answer, error) {
	f.mu.Lock()
	r := request{method, path, body, deadline}
	f.seen = append(f.seen, r)
	n := len(f.seen)
	f.mu.Unlock()
	return f.rt(n, r)
}

func (f *fakeTransport) closeIdle() {}

func (f *fakeTransport) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.seen...)
}

var _ transport = (*fakeTransport)(nil)

// newFakeClient returns a Client on a fake transport and clock. randN
// always draws the top of the range, so delays equal their ceilings.
func newFakeClient(t *testing.T, opts Options, rt func(n int, r request) (answer, error)) (*Client, *fakeTransport, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	opts.Insecure = true
	opts.clock = clk
	opts.randN = func(n int64) int64 { return n - 1 }
	c, err := New("node1:1811", opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ft := &fakeTransport{rt: rt}
	c.t = ft
	return c, ft, clk
}

func refused() error {
	return &net.OpError{Op: "dial", Net: "tcp4", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
}

func jsonAnswer(t *testing.T, status int, v any) answer {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: status, body: b}
}

func TestBackoffFullJitterCeilings(t *testing.T) {
	p := Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	top := func(n int64) int64 { return n - 1 }
	for _, tc := range []struct {
		retry int
		want  time.Duration // the ceiling, which top draws just under
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{60, time.Second}, // no overflow however many retries
	} {
		if got := p.backoff(tc.retry, top); got != tc.want-1 {
			t.Errorf("backoff(%d) with the top draw = %v, want %v", tc.retry, got, tc.want-1)
		}
		if got := p.backoff(tc.retry, func(int64) int64 { return 0 }); got != 0 {
			t.Errorf("backoff(%d) with the bottom draw = %v, want 0 (full jitter starts at 0)", tc.retry, got)
		}
	}
}

func TestUnreachableAfterMaxAttempts(t *testing.T) {
	var clk *fakeClock
	c, ft, clk := newFakeClient(t, Options{
		Timeout: 2 * time.Second,
		Retry:   RetryPolicies{Version: Policy{MaxAttempts: 4, MaxElapsed: time.Minute, BaseDelay: time.Second, MaxDelay: 10 * time.Second}},
	}, func(n int, r request) (answer, error) {
		clk.advance(500 * time.Millisecond) // each refused dial takes a while
		return answer{}, refused()
	})

	_, err := c.Version(context.Background())

	if got := len(ft.requests()); got != 4 {
		t.Errorf("Version against a refusing node sent %d requests, want 4 (MaxAttempts)", got)
	}
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("Version error = %v (%T), want *UnreachableError", err, err)
	}
	if !errors.Is(err, rpc.ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) || rpc.KindOf(err) != rpc.KindUnreachable {
		t.Errorf("error %v does not match rpc.ErrUnreachable, ECONNREFUSED and kind unreachable", err)
	}
	// 4 attempts of 0.5s plus back-off ceilings 1s, 2s, 4s (top draws).
	const want = "node1:1811: unreachable after 4 attempts over 9s: connection refused"
	if err.Error() != want {
		t.Errorf("error text = %q, want %q", err.Error(), want)
	}
	wantSleeps := []time.Duration{time.Second - 1, 2*time.Second - 1, 4*time.Second - 1}
	if len(clk.sleeps) != len(wantSleeps) {
		t.Fatalf("back-off sleeps = %v, want %v", clk.sleeps, wantSleeps)
	}
	for i := range wantSleeps {
		if clk.sleeps[i] != wantSleeps[i] {
			t.Errorf("back-off sleep %d = %v, want %v", i+1, clk.sleeps[i], wantSleeps[i])
		}
	}
}

func TestUnreachableWithinMaxElapsed(t *testing.T) {
	// A node that accepts connections and never answers (SIGSTOPped):
	// every attempt waits until its deadline.
	var clk *fakeClock
	c, ft, clk := newFakeClient(t, Options{
		Timeout: 10 * time.Second,
		Retry:   RetryPolicies{Wait: Policy{MaxAttempts: 100, MaxElapsed: 25 * time.Second, BaseDelay: 100 * time.Millisecond}},
	}, func(n int, r request) (answer, error) {
		clk.advance(r.deadline.Sub(clk.Now()))
		return answer{}, fasthttp.ErrTimeout
	})
	start := clk.Now()

	_, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: "1:2:3.000000:0000000000000001", Timeout: 5})

	if !errors.Is(err, rpc.ErrUnreachable) {
		t.Fatalf("WaitForFunction on a silent node = %v, want rpc.ErrUnreachable", err)
	}
	if elapsed := clk.Now().Sub(start); elapsed > 25*time.Second {
		t.Errorf("gave up after %v, want within MaxElapsed 25s", elapsed)
	}
	for i, r := range ft.requests() {
		if r.deadline.After(start.Add(25 * time.Second)) {
			t.Errorf("attempt %d has deadline %v past the give-up time", i+1, r.deadline.Sub(start))
		}
	}
	if got := len(ft.requests()); got != 3 {
		t.Errorf("sent %d requests, want 3 (10s + 10s + what is left of 25s)", got)
	}
	var ue *UnreachableError
	if errors.As(err, &ue) && ue.Err != nil && !errors.Is(ue.Err, fasthttp.ErrTimeout) {
		t.Errorf("cause %v does not match fasthttp.ErrTimeout", ue.Err)
	}
}

func TestBusyRetriedAfterRetryAfter(t *testing.T) {
	c, ft, clk := newFakeClient(t, Options{}, func(n int, r request) (answer, error) {
		if n < 3 {
			a := jsonAnswer(t, http.StatusServiceUnavailable, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindBusy, "3 calls running")})
			a.retryAfter = 2 * time.Second
			return a, nil
		}
		return jsonAnswer(t, http.StatusOK, rpc.Call{ID: "7:8:9.000000:00000000000000aa", State: rpc.StateRunning}), nil
	})

	rec, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "sleep"})

	if err != nil {
		t.Fatalf("StartFunction after two busy answers = %v, want success on the third", err)
	}
	if rec.ID != "7:8:9.000000:00000000000000aa" {
		t.Errorf("record ID = %q", rec.ID)
	}
	for i, d := range clk.sleeps {
		if d < 2*time.Second {
			t.Errorf("back-off %d = %v, shorter than the node's Retry-After 2s", i+1, d)
		}
	}
	// Every attempt carries the same request_id, so the node can tell a
	// retry from a new start.
	var ids []string
	for _, r := range ft.requests() {
		var req rpc.StartRequest
		if err := rpc.Decode(r.body, &req); err != nil {
			t.Fatalf("start body %s: %v", r.body, err)
		}
		ids = append(ids, req.RequestID)
	}
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("request_ids of the three attempts = %q, want one non-empty ID repeated", ids)
	}
}

func TestBusyGivesUpWithBusy(t *testing.T) {
	c, _, _ := newFakeClient(t, Options{Retry: RetryPolicies{Start: Policy{MaxAttempts: 2}}}, func(n int, r request) (answer, error) {
		return jsonAnswer(t, http.StatusServiceUnavailable, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindBusy, "full")}), nil
	})
	_, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "echo"})
	if !errors.Is(err, rpc.ErrBusy) || errors.Is(err, rpc.ErrUnreachable) {
		t.Errorf("StartFunction on a node that stays busy = %v, want rpc.ErrBusy and not unreachable", err)
	}
}

func TestRequestErrorsAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    answer
		want *rpc.Error
	}{
		{"unknown function", answer{status: 404, body: []byte(`{"error":{"kind":"unknown_function","message":"no function \"nope\""}}`)}, rpc.ErrUnknownFunction},
		{"bad request", answer{status: 400, body: []byte(`{"error":{"kind":"bad_request","message":"timeout must be >= 0"}}`)}, rpc.ErrBadRequest},
		{"shutting down", answer{status: 503, body: []byte(`{"error":{"kind":"shutting_down","message":"bye"}}`)}, rpc.ErrShuttingDown},
		{"proxy error without a body", answer{status: 502, body: []byte("Bad Gateway")}, rpc.ErrInternal},
		{"lost", answer{status: 410}, rpc.ErrLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ft, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) { return tc.a, nil })
			_, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "nope"})
			if !errors.Is(err, tc.want) {
				t.Errorf("StartFunction answered %d %s = %v, want kind %s", tc.a.status, tc.a.body, err, tc.want.Kind)
			}
			if n := len(ft.requests()); n != 1 {
				t.Errorf("sent %d requests, want 1: a request error is final", n)
			}
			if c.LastAnswer().IsZero() {
				t.Error("LastAnswer is zero after an error answer; any answer proves the node alive")
			}
		})
	}
}

func TestReleaseAfterLostAnswerIsDone(t *testing.T) {
	c, ft, _ := newFakeClient(t, Options{}, func(n int, r request) (answer, error) {
		if n == 1 {
			// The release landed, but its answer was lost.
			return answer{}, fasthttp.ErrConnectionClosed
		}
		return jsonAnswer(t, http.StatusNotFound, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindUnknownCall, "no such call")}), nil
	})
	if err := c.ReleaseFunction(context.Background(), "1:2:3.000000:0000000000000001"); err != nil {
		t.Errorf("ReleaseFunction whose retry finds the call gone = %v, want nil", err)
	}
	if n := len(ft.requests()); n != 2 {
		t.Errorf("sent %d requests, want 2", n)
	}
}

func TestReleaseOfUnknownCall(t *testing.T) {
	c, _, _ := newFakeClient(t, Options{}, func(n int, r request) (answer, error) {
		return jsonAnswer(t, http.StatusNotFound, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindUnknownCall, "no such call")}), nil
	})
	if err := c.ReleaseFunction(context.Background(), "1:2:3.000000:0000000000000001"); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("ReleaseFunction of a call the node never had = %v, want rpc.ErrUnknownCall", err)
	}
}

func TestOfflineTouchesNoNetwork(t *testing.T) {
	c, ft, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) {
		t.Error("an offline node was sent a request")
		return answer{}, refused()
	})
	c.SetOffline(true)
	if _, err := c.Version(context.Background()); !errors.Is(err, ErrOffline) {
		t.Errorf("Version on an offline node = %v, want ErrOffline", err)
	}
	res := CallEach(context.Background(), []*Client{c}, "echo", nil, 1, CallOptions{})
	if !errors.Is(res[0].Err, ErrOffline) {
		t.Errorf("CallEach result of an offline node = %v, want ErrOffline", res[0].Err)
	}
	if n := len(ft.requests()); n != 0 {
		t.Errorf("sent %d requests to an offline node", n)
	}
}

func TestCanceledDuringBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, _, _ := newFakeClient(t, Options{}, func(n int, r request) (answer, error) {
		cancel() // the caller gives up while the first attempt fails
		return answer{}, refused()
	})
	_, err := c.ListCalls(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, rpc.ErrUnreachable) {
		t.Errorf("ListCalls canceled during back-off = %v, want context.Canceled, not unreachable", err)
	}
}

func TestContextDeadlineIsNotUnreachable(t *testing.T) {
	// The caller's deadline comes before the socket timeout: the attempt
	// times out because of it, which says nothing about the node.
	c, ft, clk := newFakeClient(t, Options{Timeout: 2 * time.Hour, Retry: RetryPolicies{Version: Policy{MaxElapsed: 3 * time.Hour}}},
		func(int, request) (answer, error) { return answer{}, fasthttp.ErrTimeout })
	// The deadline is on the fake clock, which the real one is past: a
	// context.WithDeadline would have ended before the request was sent.
	ctx := fakeDeadline{context.Background(), clk.Now().Add(time.Hour)}
	_, err := c.Version(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpc.ErrUnreachable) {
		t.Errorf("Version cut by the caller's deadline = %v, want context.DeadlineExceeded", err)
	}
	d, _ := ctx.Deadline()
	if r := ft.requests(); len(r) != 1 || !r[0].deadline.Equal(d) {
		t.Errorf("requests %v, want one with the caller's deadline %v", r, d)
	}
}

// fakeDeadline is a context with a deadline on the fake clock, which
// only the client's clock reaches.
type fakeDeadline struct {
	context.Context
	d time.Time
}

func (c fakeDeadline) Deadline() (time.Time, bool) { return c.d, true }

func TestWaitIsCappedAtHalfTheSocketTimeout(t *testing.T) {
	c, ft, _ := newFakeClient(t, Options{Timeout: 4 * time.Second}, func(int, request) (answer, error) {
		return jsonAnswer(t, http.StatusOK, rpc.Call{ID: "x", State: rpc.StateRunning}), nil
	})
	if _, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: "x", Timeout: 3600}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "sleep", Timeout: 3600}); err != nil {
		t.Fatal(err)
	}
	for _, r := range ft.requests() {
		var body struct {
			Timeout float64 `json:"timeout"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Timeout != 2 {
			t.Errorf("%s asked the node to wait %vs, want 2s (half the 4s socket timeout)", r.path, body.Timeout)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr string
		opts Options
	}{
		{"without Insecure", "n:1", Options{}},
		{"address without port", "node1", Options{Insecure: true}},
		{"budget under the socket timeout", "n:1", Options{Insecure: true, Timeout: 10 * time.Second, Retry: RetryPolicies{Wait: Policy{MaxElapsed: 5 * time.Second}}}},
		{"zero attempts", "n:1", Options{Insecure: true, Retry: RetryPolicies{List: Policy{MaxAttempts: -1}}}},
	} {
		if _, err := New(tc.addr, tc.opts); err == nil {
			t.Errorf("New(%q) %s succeeded, want an error", tc.addr, tc.name)
		}
	}
}
