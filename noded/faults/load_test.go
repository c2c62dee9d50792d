//go:build fault

package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// callBound is how long one call of the load may take, retries, faults
// and resumption included, before it counts as hung. Every procedure is
// bounded far below it by the client's retry policies.
const callBound = 90 * time.Second

// load drives the work function through a client: calls StartFunction
// calls, concurrency of them at once, each with a random sleep, and with
// the given probabilities a request_id replay, a cancel, a release
// attempted while running, and a release after the end instead of the
// client's own.
type load struct {
	c           *master.Client
	l           *ledger
	prefix      string // token prefix, unique per round
	calls       int
	concurrency int
	minSleep    time.Duration
	maxSleep    time.Duration
	replayP     float64
	cancelP     float64
	releaseP    float64

	issued atomic.Int64
	// after, if set, is closed once afterN calls have been issued; a
	// scenario injects its fault then.
	after  chan struct{}
	afterN int64
	once   sync.Once
}

// run issues every call and returns once each has its outcome.
func (ld *load) run(ctx context.Context) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range ld.concurrency {
		wg.Go(func() {
			for i := range next {
				ld.one(ctx, i)
			}
		})
	}
	for i := range ld.calls {
		next <- i
	}
	close(next)
	wg.Wait()
}

// workArgs is fn_args of the work function: its token and how long to sleep.
func workArgs(token string, sleep time.Duration) json.RawMessage {
	return json.RawMessage(strconv.Quote(fmt.Sprintf("%s %.3f", token, sleep.Seconds())))
}

// one issues call i and follows it to its end.
func (ld *load) one(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, callBound)
	defer cancel()
	token := fmt.Sprintf("%s-%d", ld.prefix, i)
	sleep := ld.minSleep + time.Duration(rand.Int64N(int64(ld.maxSleep-ld.minSleep)+1))
	// A call picked for a release while it runs sleeps long enough to be
	// running still when the release arrives, whatever the network adds.
	releaseRunning := rand.Float64() < ld.releaseP
	if releaseRunning {
		sleep = 1500 * time.Millisecond
	}
	args := workArgs(token, sleep)
	e := ld.l.issue(token, "work", string(args))
	if n := ld.issued.Add(1); ld.after != nil && n >= ld.afterN {
		ld.once.Do(func() { close(ld.after) })
	}
	req := rpc.StartRequest{FnName: "work", FnArgs: args, Timeout: 0.02, RequestID: token}
	rec, err := ld.c.StartFunction(ctx, req)
	if err != nil {
		ld.l.end(e, ctxOutcome(ctx, err), err)
		return
	}
	if err := e.setID(rec.ID); err != nil {
		ld.l.problem("%v", err)
	}
	if releaseRunning {
		// A running call may not be released: it would lose its result.
		ld.l.count("releases of running calls")
		err := ld.c.ReleaseFunction(ctx, rec.ID)
		if !errors.Is(err, rpc.ErrBadRequest) && classify(err) != lost && classify(err) != unreachable {
			ld.l.problem("call %s: release while running: %v, want bad_request", token, err)
		}
	}
	if rand.Float64() < ld.replayP {
		ld.l.count("replays")
		again, err := ld.c.StartFunction(ctx, req)
		switch {
		case err == nil && again.ID != rec.ID && ld.restarted(rec.ID, again.ID):
			// The node restarted between the start and its replay: the
			// new daemon never saw the request_id and started the
			// function again (doc/client.md, "Restarts"). The first call
			// is lost; the new one is followed to its end here so that
			// it, too, is accounted for.
			ld.l.count("replays answered by a restarted daemon")
			if _, err := ld.c.Await(ctx, again.ID, master.CallOptions{}); classify(err) != succeeded && classify(err) != lost && classify(err) != unreachable {
				ld.l.problem("call %s: the replay's call %s on the restarted daemon: %v", token, again.ID, err)
			}
		case err == nil:
			if err := e.setID(again.ID); err != nil {
				ld.l.problem("replay: %v", err)
			}
		case classify(err) == unreachable:
			// The replay's fault is the fault under test; the call goes
			// on, and its wait reports what the node says.
		default:
			ld.l.problem("call %s: replaying its start: %v", token, err)
		}
	}
	if !rec.Finished && rand.Float64() < ld.cancelP {
		ld.l.count("cancels")
		if _, err := ld.c.CancelFunction(ctx, rec.ID); err != nil {
			// A cancel the node cannot answer is the call's outcome: it
			// is lost or unreachable, and waiting would only say the same.
			ld.l.end(e, ctxOutcome(ctx, err), err)
			return
		}
	}
	keep := rand.Float64() < ld.releaseP
	final, err := ld.c.Await(ctx, rec.ID, master.CallOptions{Keep: keep})
	o := ctxOutcome(ctx, err)
	ld.l.end(e, o, err)
	if o == succeeded && string(final.Result) != strconv.Quote(token) {
		ld.l.problem("call %s (ID %s): result %s, want %q", token, rec.ID, final.Result, token)
	}
	if keep && final != nil && final.Finished {
		ld.l.count("explicit releases")
		if err := ld.c.ReleaseFunction(ctx, rec.ID); err != nil && classify(err) != lost && classify(err) != unreachable {
			ld.l.problem("call %s (ID %s): release after the end: %v", token, rec.ID, err)
		} else if err == nil {
			// Released means forgotten: a wait now answers unknown_call.
			_, err := ld.c.WaitForFunction(ctx, rpc.WaitRequest{ID: rec.ID})
			if !errors.Is(err, rpc.ErrUnknownCall) && classify(err) != lost && classify(err) != unreachable {
				ld.l.problem("call %s (ID %s): wait after release: %v, want unknown_call", token, rec.ID, err)
			}
		}
	}
}

// restarted reports whether the calls a and b were issued by different
// noded processes.
func (ld *load) restarted(a, b string) bool {
	ia, erra := rpc.ParseCallID(a)
	ib, errb := rpc.ParseCallID(b)
	return erra == nil && errb == nil && ia.PPID != ib.PPID
}

// ctxOutcome is err's outcome, or hung if the call's bound ran out.
func ctxOutcome(ctx context.Context, err error) outcome {
	if err != nil && ctx.Err() != nil {
		return hung
	}
	return classify(err)
}

// resume takes an entry the client reported unreachable to its end once
// the fault is over: a call with an ID is awaited again; a start that was
// never answered is sent again with the same request_id, which must answer
// the call the node already started, if it started one.
func resume(ctx context.Context, t *testing.T, c *master.Client, l *ledger, e *entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, callBound)
	defer cancel()
	id := e.ID()
	if id == "" {
		rec, err := c.StartFunction(ctx, rpc.StartRequest{FnName: e.fn, FnArgs: json.RawMessage(e.args), RequestID: e.token})
		if err != nil {
			l.resumed(e, ctxOutcome(ctx, err), err)
			return
		}
		if err := e.setID(rec.ID); err != nil {
			l.problem("resume: %v", err)
		}
		id = rec.ID
	}
	_, err := c.Await(ctx, id, master.CallOptions{})
	l.resumed(e, ctxOutcome(ctx, err), err)
}

// calmTimeout is the socket timeout of clients whose bound is not under
// test: generous, so that a machine busy with other work cannot turn a
// slow answer into an unreachable node.
const calmTimeout = 5 * time.Second

// newClient returns a client of addr with the socket timeout and the
// retry policy p for every procedure (zero fields keep the defaults).
func newClient(t *testing.T, addr string, timeout time.Duration, p master.Policy) *master.Client {
	t.Helper()
	c, err := master.New(addr, master.Options{
		Insecure: true,
		Timeout:  timeout,
		Retry:    master.RetryPolicies{Start: p, Wait: p, Cancel: p, Release: p, List: p, Version: p},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
