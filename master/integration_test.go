package master

// Tests against real noded processes, started with nodetest. They are in
// package master so that a test can count the requests a Call sends.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestMain(m *testing.M) { nodetest.Main(m) }

// testOptions are short timeouts, so that failures are detected in about
// a second instead of the defaults' tens of seconds.
func testOptions() Options {
	short := Policy{MaxAttempts: 5, MaxElapsed: 3 * time.Second, BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	return Options{
		Insecure: true,
		Timeout:  time.Second,
		Retry:    RetryPolicies{Start: short, Wait: short, Cancel: short, Release: short, List: short, Version: short},
	}
}

func newClient(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	c, err := New(addr, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// countingTransport counts the requests of each procedure.
type countingTransport struct {
	transport
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) roundTrip(ctx context.Context, method, path string, body []byte, deadline time.Time) (answer, error) {
	c.mu.Lock()
	c.n[path]++
	c.mu.Unlock()
	return c.transport.roundTrip(ctx, method, path, body, deadline)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func countRequests(c *Client) *countingTransport {
	ct := &countingTransport{transport: c.t, n: map[string]int{}}
	c.t = ct
	return ct
}

// untilRunning waits until the node lists a running call of fn, and
// returns its ID.
func untilRunning(t *testing.T, c *Client, fn string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		list, err := c.ListCalls(ctx)
		if err != nil {
			t.Fatalf("ListCalls: %v", err)
		}
		for _, s := range list {
			if s.FnName == fn && s.State == rpc.StateRunning {
				return s.ID
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no call of %s running within 10s: %+v", fn, list)
		case <-time.After(10 * time.Millisecond):
			// Polling the node's list: it is the node's own view of the call.
		}
	}
}

// callInBackground starts c.Call(fn, args) in a goroutine and returns
// once the Call is waiting in rounds: the function's first log line has
// been passed on, so the start has been answered. The channel yields the
// Call's outcome.
func callInBackground(t *testing.T, c *Client, fn string, args any) <-chan callOutcome {
	t.Helper()
	result := make(chan callOutcome, 1)
	logged := make(chan struct{})
	var once sync.Once
	go func() {
		rec, err := c.Call(context.Background(), fn, args, CallOptions{
			OnLog: func(LogLine) { once.Do(func() { close(logged) }) },
		})
		result <- callOutcome{rec, err, time.Now()}
	}()
	select {
	case <-logged:
	case o := <-result:
		t.Fatalf("Call(%s) ended before it logged: %+v, %v", fn, o.rec, o.err)
	case <-time.After(10 * time.Second):
		t.Fatalf("Call(%s) logged nothing within 10s", fn)
	}
	return result
}

type callOutcome struct {
	rec *rpc.Call
	err error
	at  time.Time
}

func TestCallEchoAndRelease(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	args := map[string]any{"greeting": "hello", "n": 42.0}

	rec, err := c.Call(context.Background(), "echo", args, CallOptions{})

	if err != nil {
		t.Fatalf("Call(echo, %v) = %v", args, err)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Result, &got); err != nil || got["greeting"] != "hello" || got["n"] != 42.0 {
		t.Errorf("Call(echo, %v) result = %s, want the args back", args, rec.Result)
	}
	// Call releases: with no start to carry it, the release goes out
	// on its own after its delay.
	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 1, "noded_calls_retained": 0})
	if c.LastAnswer().IsZero() || time.Since(c.LastAnswer()) > 10*time.Second {
		t.Errorf("LastAnswer = %v after a call answered just now", c.LastAnswer())
	}
}

func TestLongCallOverRoundsWithLog(t *testing.T) {
	// Five log lines over about 2.5s: several wait rounds of 0.5s.
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"slowlog": `for i in 1 2 3 4 5; do echo "step $i" >&2; sleep 0.5; done; echo '{"steps":5}'`,
	}})
	c := newClient(t, n.Addr(), testOptions())
	ct := countRequests(c)

	var mu sync.Mutex
	var lines []LogLine
	var arrived []time.Time
	start := time.Now()
	rec, err := c.Call(context.Background(), "slowlog", nil, CallOptions{OnLog: func(l LogLine) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
		arrived = append(arrived, time.Now())
	}})
	done := time.Now()

	if err != nil {
		t.Fatalf("Call(slowlog) = %v", err)
	}
	if string(rec.Result) != `{"steps":5}` {
		t.Errorf("result = %s, want {\"steps\":5}", rec.Result)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 5 {
		t.Fatalf("got log lines %+v, want 5", lines)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("step %d", i+1); l.Text != want || l.N != i || l.CallID != rec.ID || l.Node != n.Addr() {
			t.Errorf("log line %d = %+v, want %q numbered %d of call %s on %s", i, l, want, i, rec.ID, n.Addr())
		}
	}
	// Lines arrive live, as the function writes them, not all at the end.
	if first := arrived[0].Sub(start); first > time.Second {
		t.Errorf("first log line arrived %v after the start, want well before the call's end %v", first, done.Sub(start))
	}
	if rounds := ct.count(rpc.PathWaitForFunction); rounds < 3 {
		t.Errorf("a 2.5s call with a 1s socket timeout took %d wait rounds, want at least 3", rounds)
	}
}

func TestFunctionFailure(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"fail": `echo "checking disk" >&2; echo "disk is full" >&2; exit 3`,
	}})
	c := newClient(t, n.Addr(), testOptions())

	rec, err := c.Call(context.Background(), "fail", nil, CallOptions{})

	var ce *CallError
	if !errors.As(err, &ce) || !errors.Is(err, rpc.ErrFunctionFailed) {
		t.Fatalf("Call(fail) = %v, want a *CallError matching rpc.ErrFunctionFailed", err)
	}
	if ce.Err.ExitCode == nil || *ce.Err.ExitCode != 3 {
		t.Errorf("exit code = %v, want 3", ce.Err.ExitCode)
	}
	if want := []string{"checking disk", "disk is full"}; strings.Join(ce.Log, "|") != strings.Join(want, "|") {
		t.Errorf("CallError.Log = %q, want %q", ce.Log, want)
	}
	if ce.ID != rec.ID || ce.Node != n.Addr() || ce.FnName != "fail" {
		t.Errorf("CallError = %+v, want call %s on %s", ce, rec.ID, n.Addr())
	}
}

func TestRequestErrorsFromNoded(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	if _, err := c.Call(context.Background(), "no_such_function", nil, CallOptions{}); !errors.Is(err, rpc.ErrUnknownFunction) {
		t.Errorf("Call(no_such_function) = %v, want rpc.ErrUnknownFunction", err)
	}
	if _, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: "not an id"}); !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("WaitForFunction(malformed ID) = %v, want rpc.ErrBadRequest", err)
	}
	// An ID of a daemon that started (and so ended) before this one.
	old := rpc.NewCallID(n.PID(), 1, time.Now().Add(-time.Hour)).String()
	if _, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: old}); !errors.Is(err, rpc.ErrLost) {
		t.Errorf("WaitForFunction(ID of an earlier daemon) = %v, want rpc.ErrLost", err)
	}
}

func TestCancelMidCall(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	result := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "sleep", map[string]any{"seconds": 60}, CallOptions{})
		result <- err
	}()
	id := untilRunning(t, c, "sleep")

	if _, err := c.CancelFunction(context.Background(), id); err != nil {
		t.Fatalf("CancelFunction(%s) = %v", id, err)
	}

	select {
	case err := <-result:
		if !errors.Is(err, rpc.ErrCancelled) {
			t.Errorf("Call(sleep 60) cancelled = %v, want rpc.ErrCancelled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Call did not return within 20s of its cancel")
	}
}

func TestContextEndsCallThenAwait(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()

	rec, err := c.Call(ctx, "sleep", map[string]any{"seconds": 1.5}, CallOptions{})

	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpc.ErrUnreachable) {
		t.Fatalf("Call with a 0.7s deadline on a 1.5s function = %v, want context.DeadlineExceeded", err)
	}
	if rec == nil || rec.ID == "" || rec.Finished {
		t.Fatalf("Call returned record %+v with its error, want the running call", rec)
	}
	// Giving up waiting is not stopping the work: the call can be waited
	// for again.
	got, err := c.Await(context.Background(), rec.ID, CallOptions{})
	if err != nil || string(got.Result) != `{"slept":1.5}` {
		t.Errorf("Await(%s) = %+v, %v; want the sleep's result", rec.ID, got, err)
	}
}

func TestStoppedNodeIsUnreachableWithinBound(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	opts := testOptions()
	c := newClient(t, n.Addr(), opts)
	bound := c.Policies().Wait.MaxElapsed
	result := callInBackground(t, c, "sleep", map[string]any{"seconds": 60})

	if err := n.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// The cleanup's Stop sends SIGCONT before SIGTERM; this makes sure the
	// node runs again even if the test fails before it gets there.
	t.Cleanup(func() { n.Signal(syscall.SIGCONT) })

	var o callOutcome
	select {
	case o = <-result:
	case <-time.After(bound + 10*time.Second):
		t.Fatalf("Call on a stopped node did not return within %v", bound+10*time.Second)
	}
	took := o.at.Sub(stopped)
	var ue *UnreachableError
	if !errors.As(o.err, &ue) || !errors.Is(o.err, rpc.ErrUnreachable) {
		t.Fatalf("Call on a stopped node = %v, want *UnreachableError", o.err)
	}
	// The bound runs from the node's last answer, which came at most one
	// round (half the socket timeout) before the stop; 0.5s covers
	// scheduling on a loaded machine.
	if took > bound+500*time.Millisecond {
		t.Errorf("unreachable reported %v after the stop, want within the documented bound %v", took, bound)
	}
	if took < opts.Timeout/2 {
		t.Errorf("unreachable reported %v after the stop, sooner than a node is allowed to take (%v)", took, opts.Timeout/2)
	}
	if ue.Procedure != "WaitForFunction" || ue.Attempts < 2 {
		t.Errorf("UnreachableError = %+v, want WaitForFunction after several attempts", ue)
	}
	if o.rec == nil || o.rec.Finished {
		t.Errorf("record returned with unreachable = %+v, want the running call", o.rec)
	}
	t.Logf("stopped node reported unreachable after %v (bound %v): %v", took.Round(time.Millisecond), bound, o.err)

	// Once it runs again, the call is still there to cancel.
	if err := n.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CancelFunction(context.Background(), o.rec.ID); err != nil {
		t.Errorf("CancelFunction after SIGCONT = %v", err)
	}
}

func TestCrashedNodeLosesCall(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	// The waits must outlast the node's restart, however slow the
	// machine: bound them by time, not by a handful of attempts.
	opts := testOptions()
	opts.Retry.Wait = Policy{MaxAttempts: 1000, MaxElapsed: 15 * time.Second, BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	c := newClient(t, n.Addr(), opts)
	result := callInBackground(t, c, "sleep", map[string]any{"seconds": 60})
	id := untilRunning(t, c, "sleep")

	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := n.Relaunch(); err != nil {
		t.Fatal(err)
	}

	select {
	case o := <-result:
		err := o.err
		var ce *CallError
		if !errors.Is(err, rpc.ErrLost) || !errors.As(err, &ce) || ce.ID != id {
			t.Errorf("Call whose node crashed and restarted = %v, want a *CallError for %s matching rpc.ErrLost", err, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Call did not return within 20s of its node's restart: it hangs")
	}
}

func TestShutdownMidCallCancels(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	result := callInBackground(t, c, "sleep", map[string]any{"seconds": 60})

	// A graceful restart stops the function first, and the waiting Call
	// is answered with that end before the daemon goes.
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}

	select {
	case o := <-result:
		err := o.err
		if !errors.Is(err, rpc.ErrCancelled) && !errors.Is(err, rpc.ErrLost) {
			t.Errorf("Call whose node shut down = %v, want rpc.ErrCancelled (or rpc.ErrLost if the answer missed the shutdown)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Call did not return within 30s of its node's restart")
	}
}

// dropFirstReply is a TCP proxy to upstream that, on the first connection
// only, lets the request through, swallows the node's reply and closes
// the connection: the node did the work, the client never heard of it.
type dropFirstReply struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn // every connection, closed by the cleanup
}

func newDropFirstReply(t *testing.T, upstream string) *dropFirstReply {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropFirstReply{ln: ln, upstream: upstream}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *dropFirstReply) addr() string { return p.ln.Addr().String() }

func (p *dropFirstReply) serve() {
	for first := true; ; first = false {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		node, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, node)
		p.mu.Unlock()
		p.wg.Go(func() {
			io.Copy(node, client)
			node.Close()
		})
		p.wg.Go(func() {
			defer client.Close()
			if first {
				// The reply has started: the node has done its part.
				node.Read(make([]byte, 1))
				return
			}
			io.Copy(client, node)
		})
	}
}

func TestRetriedStartRunsOnce(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"count": `echo run >> @STATE@/runs; echo '"counted"'`,
	}})
	runs := filepath.Join(n.State(), "runs")
	proxy := newDropFirstReply(t, n.Addr())
	c := newClient(t, proxy.addr(), testOptions())
	ct := countRequests(c)

	rec, err := c.Call(context.Background(), "count", nil, CallOptions{})

	if err != nil || string(rec.Result) != `"counted"` {
		t.Fatalf("Call(count) through a proxy that drops the first reply = %+v, %v; want success", rec, err)
	}
	if got := ct.count(rpc.PathStartFunction); got != 2 {
		t.Errorf("StartFunction sent %d times, want 2 (the first reply was dropped)", got)
	}
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "run"); got != 1 {
		t.Errorf("the function ran %d times, want once: the retry carried the first start's request_id", got)
	}
}

func TestFanOutToFiftyNodesWithSomeDead(t *testing.T) {
	const total = 50
	// No warm function processes: fifty nodes would keep two hundred of
	// them, over 5 GB of RSS when built with the race detector, and the
	// fan-out does not need them.
	nodes := nodetest.StartMany(t, total, nodetest.Options{Flags: []string{"--warm", "0"}})
	dead := map[int]bool{3: true, 17: true, 42: true}
	const offline = 25
	for i := range dead {
		if err := nodes[i].Kill(); err != nil {
			t.Fatal(err)
		}
	}
	clients := make([]*Client, total)
	for i, n := range nodes {
		clients[i] = newClient(t, n.Addr(), testOptions())
	}
	clients[offline].SetOffline(true)

	start := time.Now()
	results := CallEach(context.Background(), clients, "echo", map[string]string{"hello": "cluster"}, 16, CallOptions{})
	took := time.Since(start)

	if len(results) != total {
		t.Fatalf("CallEach returned %d results for %d nodes", len(results), total)
	}
	for i, r := range results {
		switch {
		case r.Node != nodes[i].Addr():
			t.Errorf("result %d is for %s, want %s (results in the order of clients)", i, r.Node, nodes[i].Addr())
		case dead[i]:
			if !errors.Is(r.Err, rpc.ErrUnreachable) {
				t.Errorf("dead node %s: %v, want rpc.ErrUnreachable", r.Node, r.Err)
			}
		case i == offline:
			if !errors.Is(r.Err, ErrOffline) {
				t.Errorf("offline node %s: %v, want ErrOffline", r.Node, r.Err)
			}
		default:
			if r.Err != nil || string(r.Call.Result) != `{"hello":"cluster"}` {
				t.Errorf("node %s: %+v, %v; want the echo", r.Node, r.Call, r.Err)
			}
		}
	}
	t.Logf("fan-out to %d nodes (%d dead, 1 offline) took %v", total, len(dead), took.Round(time.Millisecond))
}

// TestCallOverIPv6Loopback: a node listening on [::1] is called as
// "[::1]:port" without TLS, as noded --help suggests; fasthttp's own
// dialer resolves to IPv4 only unless told otherwise.
func TestCallOverIPv6Loopback(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Listen: "[::1]:0"})
	if !strings.HasPrefix(n.Addr(), "[::1]:") {
		t.Fatalf("node listens on %s, want [::1]:port", n.Addr())
	}
	c := newClient(t, n.Addr(), testOptions())

	rec, err := c.Call(context.Background(), "echo", []int{6}, CallOptions{})

	if err != nil || string(rec.Result) != "[6]" {
		t.Fatalf("Call(echo) over [::1] = %v, %v; want [6]", rec, err)
	}
}
