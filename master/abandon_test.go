package master

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// gatedNode runs "gated": it counts its runs, logs "waiting", and ends
// once the test opens its gate (the file gate in the node's state).
func gatedNode(t *testing.T) (n *nodetest.Node, open func(), runs func() int) {
	t.Helper()
	n = nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"gated": `echo run >> @STATE@/runs; echo waiting >&2; while [ ! -e @STATE@/gate ]; do sleep 0.02; done; echo '"opened"'`,
	}})
	open = func() { os.WriteFile(filepath.Join(n.State(), "gate"), nil, 0o644) }
	t.Cleanup(open)
	runs = func() int {
		b, _ := os.ReadFile(filepath.Join(n.State(), "runs"))
		return strings.Count(string(b), "run")
	}
	return n, open, runs
}

// startRoundOptions give the start a round long enough that a test
// cancels it while the node still holds the start's answer.
func startRoundOptions() Options {
	o := testOptions()
	o.Timeout = 40 * time.Second
	o.Retry = RetryPolicies{}
	return o
}

// callAndCancel runs Call(gated) and cancels its ctx once the node runs
// the call, during the start's round.
func callAndCancel(t *testing.T, c *Client, opts CallOptions) (*rpc.Call, error, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type out struct {
		rec *rpc.Call
		err error
	}
	done := make(chan out, 1)
	go func() {
		rec, err := c.Call(ctx, "gated", nil, opts)
		done <- out{rec, err}
	}()
	id := untilRunning(t, c, "gated")
	cancel()
	o := <-done
	return o.rec, o.err, id
}

func TestCallCancelledDuringStartNamesTheCall(t *testing.T) {
	n, open, runs := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions())

	rec, err, id := callAndCancel(t, c, CallOptions{})

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want an error matching context.Canceled", err)
	}
	var ab *AbandonedCallError
	if !errors.As(err, &ab) {
		t.Fatalf("Call = %v (%T), want an *AbandonedCallError naming the call", err, err)
	}
	if ab.ID != id || ab.Node != n.Addr() || ab.State != rpc.StateRunning || ab.Cancelled || ab.FnName != "gated" {
		t.Errorf("AbandonedCallError = %+v, want call %s on %s, running, not cancelled", ab, id, n.Addr())
	}
	if rec == nil || rec.ID != id {
		t.Errorf("record = %+v, want the running call %s", rec, id)
	}
	if want := "which is still running"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), id) {
		t.Errorf("error %q does not say that call %s is %s", err, id, want)
	}
	// The call goes on, and the repeated start ran nothing twice: Await
	// takes it to its end.
	open()
	got, err := c.Await(context.Background(), id, CallOptions{})
	if err != nil || string(got.Result) != `"opened"` {
		t.Fatalf("Await(%s) = %+v, %v; want the call's result", id, got, err)
	}
	if r := runs(); r != 1 {
		t.Errorf("the function ran %d times, want 1", r)
	}
}

func TestCallCancelAbandonedStopsTheCall(t *testing.T) {
	n, _, runs := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions())

	rec, err, id := callAndCancel(t, c, CallOptions{CancelAbandoned: true})

	var ab *AbandonedCallError
	if !errors.As(err, &ab) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want an *AbandonedCallError matching context.Canceled", err)
	}
	if !ab.Cancelled || ab.ID != id {
		t.Errorf("AbandonedCallError = %+v, want call %s cancelled", ab, id)
	}
	if rec == nil || rec.ID != id {
		t.Fatalf("record = %+v, want call %s", rec, id)
	}
	// The node stopped it: a wait now finds it cancelled, or released
	// once the cancel saw it end.
	got, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: id, Timeout: 5})
	switch {
	case errors.Is(err, rpc.ErrUnknownCall):
		if !rec.Finished {
			t.Errorf("call %s released while the cancel's record says %s", id, rec.State)
		}
	case err != nil:
		t.Fatalf("WaitForFunction(%s) = %v", id, err)
	case got.State != rpc.StateCancelled:
		t.Errorf("call %s ended %s, want cancelled", id, got.State)
	}
	if r := runs(); r != 1 {
		t.Errorf("the function ran %d times, want 1", r)
	}
}

func TestAwaitCancelledInFirstRoundNamesTheCall(t *testing.T) {
	n, _, _ := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions())
	rec, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "gated"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Await(ctx, rec.ID, CallOptions{})
		done <- err
	}()
	// The node holds the wait for its round; cancelling ends it early.
	n.AwaitMetric(t, "noded_wait_requests_in_flight", "the wait held", func(v float64) bool { return v >= 1 })
	cancel()
	err = <-done
	var ab *AbandonedCallError
	if !errors.As(err, &ab) || !errors.Is(err, context.Canceled) || ab.ID != rec.ID || ab.Node != n.Addr() {
		t.Fatalf("Await = %v, want an *AbandonedCallError for call %s matching context.Canceled", err, rec.ID)
	}
}

func TestCallWithEndedContextStartsNothing(t *testing.T) {
	n, _, runs := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Call(ctx, "gated", nil, CallOptions{})
	var ab *AbandonedCallError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ab) {
		t.Fatalf("Call with an ended ctx = %v, want context.Canceled and no call", err)
	}
	list, err := c.ListCalls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 || runs() != 0 {
		t.Errorf("node holds %+v and ran the function %d times after a Call whose ctx had ended", list, runs())
	}
}

func TestCallDeadlineNamesTheCall(t *testing.T) {
	n, open, _ := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rec, err := c.Call(ctx, "gated", nil, CallOptions{})
	var ab *AbandonedCallError
	if !errors.As(err, &ab) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call past its deadline = %v, want an *AbandonedCallError matching context.DeadlineExceeded", err)
	}
	if rec == nil || ab.ID != rec.ID || ab.State != rpc.StateRunning {
		t.Errorf("AbandonedCallError = %+v, record %+v; want the running call", ab, rec)
	}
	open()
	if got, err := c.Await(context.Background(), ab.ID, CallOptions{}); err != nil || string(got.Result) != `"opened"` {
		t.Errorf("Await(%s) = %+v, %v", ab.ID, got, err)
	}
}

func TestCallEachCancelledDuringStartNamesEveryCall(t *testing.T) {
	n, _, _ := gatedNode(t)
	clients := []*Client{newClient(t, n.Addr(), startRoundOptions()), newClient(t, n.Addr(), startRoundOptions())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []Result, 1)
	go func() { done <- CallEach(ctx, clients, "gated", nil, 0, CallOptions{CancelAbandoned: true}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := clients[0].ListCalls(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node holds %+v, want two running calls", list)
		}
		time.Sleep(10 * time.Millisecond) // polling the node's own view
	}
	cancel()
	ids := map[string]bool{}
	for i, r := range <-done {
		var ab *AbandonedCallError
		if !errors.As(r.Err, &ab) || !errors.Is(r.Err, context.Canceled) || ab.ID == "" || !ab.Cancelled {
			t.Errorf("result %d = %+v, want an *AbandonedCallError naming a call it cancelled", i, r)
			continue
		}
		ids[ab.ID] = true
	}
	if len(ids) != 2 {
		t.Errorf("results name calls %v, want two", ids)
	}
}
