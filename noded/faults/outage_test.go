//go:build fault

package faults

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// boundSlack is what the check of the unreachable bound allows past
// MaxElapsed: scheduling of this process, under the race detector, on a
// machine that other work shares.
const boundSlack = time.Second

// outageStats sums the rounds of an outage scenario.
type outageStats struct {
	faults      int
	inFlight    int           // calls running when the fault began
	startedIn   int           // starts sent during the fault
	unreachable int           // reported unreachable
	worst       time.Duration // longest time from the fault (or the procedure's start, if later) to the report
}

// outageRound runs one round of a fault that silences the node: k calls
// are started and awaited before begin injects the fault, and k more are
// started during it. Every one of them must be reported unreachable within
// bound (the client's MaxElapsed, doc/client.md "The unreachable bound")
// of the later of the fault and the procedure's own start; only then does
// end lift the fault, and every call is resumed: awaited again, or its
// start replayed with the same request_id, and must succeed having run
// once. tight is the client whose bound is checked; calm, a client of the
// same node with generous timeouts, starts the calls before the fault and
// resumes them after it, so that a busy machine cannot fail those steps.
func outageRound(t *testing.T, tight, calm *master.Client, l *ledger, prefix string, k int, bound time.Duration, begin, end func(), st *outageStats) {
	t.Helper()
	ctx := t.Context()
	type report struct {
		e        *entry
		o        outcome
		err      error
		opStart  time.Time
		reported time.Time
	}
	var (
		mu      sync.Mutex
		reports []report
		wg      sync.WaitGroup
	)
	record := func(e *entry, opStart time.Time, err error) {
		r := report{e: e, o: classify(err), err: err, opStart: opStart, reported: time.Now()}
		l.end(e, r.o, err)
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}
	// Calls running when the fault begins: each sleeps well past it.
	for i := range k {
		token := fmt.Sprintf("%s-running-%d", prefix, i)
		args := workArgs(token, 2*time.Second)
		e := l.issue(token, "work", string(args))
		rec, err := calm.StartFunction(ctx, rpc.StartRequest{FnName: "work", FnArgs: args, RequestID: token})
		if err != nil {
			t.Fatalf("starting %s before the fault: %v", token, err)
		}
		if err := e.setID(rec.ID); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			opStart := time.Now()
			_, err := tight.Await(ctx, rec.ID, master.CallOptions{})
			record(e, opStart, err)
		})
	}
	faultAt := time.Now()
	begin()
	st.faults++
	st.inFlight += k
	// Starts sent into the fault.
	for i := range k {
		token := fmt.Sprintf("%s-start-%d", prefix, i)
		args := workArgs(token, 200*time.Millisecond)
		e := l.issue(token, "work", string(args))
		wg.Go(func() {
			opStart := time.Now()
			rec, err := tight.StartFunction(ctx, rpc.StartRequest{FnName: "work", FnArgs: args, RequestID: token})
			if err == nil {
				e.setID(rec.ID)
				_, err = tight.Await(ctx, rec.ID, master.CallOptions{})
			}
			record(e, opStart, err)
		})
	}
	st.startedIn += k
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	limit := bound + boundSlack + 5*time.Second
	select {
	case <-done:
	case <-time.After(limit):
		end()
		t.Fatalf("%s: calls still unanswered %s after the fault began: a fault turned into a hang", prefix, limit)
	}
	for _, r := range reports {
		from := faultAt
		if r.opStart.After(from) {
			from = r.opStart
		}
		took := r.reported.Sub(from)
		st.worst = max(st.worst, took)
		if r.o != unreachable {
			t.Errorf("%s: call %s (ID %q) ended %s during the fault, want unreachable: %v", prefix, r.e.token, r.e.ID(), r.o, r.err)
			continue
		}
		st.unreachable++
		if took > bound+boundSlack {
			t.Errorf("%s: call %s reported unreachable %s after the fault began (or after its procedure started), over the bound %s: %v",
				prefix, r.e.token, took.Round(time.Millisecond), bound, r.err)
		}
	}
	end()
	resumeAll(t, calm, l)
}

// TestFreezeThaw freezes noded with SIGSTOP while calls run and starts are
// sent, and thaws it with SIGCONT once every one of them has been
// reported unreachable. The report must come within the documented bound
// (Retry.Wait.MaxElapsed, doc/client.md); after the thaw every call is
// resumed and must have run exactly once: the starts noded finds queued
// in its listen backlog and the client's replays share a request_id.
func TestFreezeThaw(t *testing.T) {
	sc := pick(scale{rounds: 2, calls: 6}, scale{rounds: 8, calls: 16})
	n := startNode(t, "--shutdown-grace", "1s", "--warm", "2")
	const timeout, maxElapsed = time.Second, 3 * time.Second
	c := newClient(t, n.Addr(), timeout, master.Policy{MaxElapsed: maxElapsed})
	calm := newClient(t, n.Addr(), calmTimeout, master.Policy{})
	l := newLedger()
	series := idleSeries{baseline: idle(t, n, 0)}
	var st outageStats
	for r := 1; r <= sc.rounds; r++ {
		outageRound(t, c, calm, l, fmt.Sprintf("r%d", r), sc.calls, maxElapsed,
			func() { signal(t, n, syscall.SIGSTOP) },
			func() { signal(t, n, syscall.SIGCONT) }, &st)
		c.Close()
		calm.Close()
		series.rounds = append(series.rounds, idle(t, n, series.baseline.fds))
	}
	ta := l.check(t, n, nil, unreachable, succeeded)
	series.checkGrowth(t, steady)
	left, zombies := waitNoLeftovers(n, 5*time.Second)
	report(t, row{
		scenario: "noded frozen (SIGSTOP) and thawed (SIGCONT)",
		calls:    ta.calls,
		faults: fmt.Sprintf("%d freezes, each with %d calls running and %d starts sent into it; socket timeout %s, MaxElapsed %s; slowest report %s",
			st.faults, sc.calls, sc.calls, timeout, maxElapsed, st.worst.Round(10*time.Millisecond)),
		outcomes: ta.outcomes(),
		dups:     ta.dups,
		left:     len(left),
		zombies:  len(zombies),
		idle:     series.String(),
	})
}
