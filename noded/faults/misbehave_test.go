//go:build fault

package faults

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// misbehaviour is one way a function process can misbehave, and how noded
// must report it.
type misbehaviour struct {
	name       string
	fn         string
	args       json.RawMessage
	abortAfter time.Duration
	cancel     bool // cancel it once it runs (and ignores SIGTERM)
	want       outcome
	kind       rpc.Kind // the call's error kind; "" for success
	signal     string   // the signal that ended the process, if one must have
	result     string   // the result of a success
	within     time.Duration
}

// TestMisbehavingFunctions runs functions that crash, hang past
// abort_after, ignore SIGTERM when cancelled, flood stdout or stderr,
// daemonize a grandchild with setsid, exit before reading their stdin,
// and write half a result, several of each at once. Each must end with
// its documented outcome within its bound, leave no process behind (the
// daemonized grandchild included), and leave noded's memory bounded.
func TestMisbehavingFunctions(t *testing.T) {
	const grace = time.Second
	const maxLogLines = 100
	// Four times a pipe's buffer: the write to the stdin nobody reads fails.
	bigArgs, _ := json.Marshal(strings.Repeat("x", 256<<10))
	cases := []misbehaviour{
		{name: "crash", fn: "crash", want: failed, kind: rpc.KindFunctionFailed, signal: "SIGSEGV", within: 10 * time.Second},
		{name: "hang past abort_after", fn: "hang", abortAfter: 2 * time.Second, want: aborted, kind: rpc.KindAborted, signal: "SIGKILL", within: 2*time.Second + grace + 10*time.Second},
		{name: "ignore SIGTERM, cancelled", fn: "hang", cancel: true, want: cancelled, kind: rpc.KindCancelled, signal: "SIGKILL", within: grace + 10*time.Second},
		{name: "flood stdout", fn: "floodout", want: failed, kind: rpc.KindResultTooLarge, within: 20 * time.Second},
		{name: "flood stderr", fn: "flooderr", want: succeeded, result: `"flooded"`, within: 30 * time.Second},
		{name: "daemonize with setsid", fn: "daemonize", want: succeeded, result: `"daemonized"`, within: 10 * time.Second},
		{name: "exit before reading stdin", fn: "noread", args: bigArgs, want: succeeded, result: `"did not read"`, within: 10 * time.Second},
		{name: "partial result", fn: "partial", want: failed, kind: rpc.KindProtocolError, within: 10 * time.Second},
	}
	if only := os.Getenv("NODERPC_FAULT_CASES"); only != "" {
		// A comma-separated list of case names narrows the scenario, to
		// look at one misbehaviour alone.
		var keep []misbehaviour
		for _, mb := range cases {
			if slices.Contains(strings.Split(only, ","), mb.name) {
				keep = append(keep, mb)
			}
		}
		cases = keep
	}
	sc := pick(scale{rounds: 2, calls: 3}, scale{rounds: 6, calls: 10})
	// noded is built without the race detector here, whatever the tests
	// run with: the scenario bounds its peak RSS, which the detector's
	// shadow memory inflates (98 MiB where the bound is 96 MiB).
	n := startNodeWith(t, nodetest.Options{NoRace: true, Flags: []string{"--max-result", "1048576",
		"--max-log-lines", strconv.Itoa(maxLogLines), "--shutdown-grace", grace.String(), "--warm", "2"}})
	c := newClient(t, n.Addr(), calmTimeout, master.Policy{})
	l := newLedger()
	series := idleSeries{baseline: idle(t, n, 0)}
	for r := 1; r <= sc.rounds; r++ {
		var wg sync.WaitGroup
		for _, mb := range cases {
			for i := range sc.calls {
				token := fmt.Sprintf("r%d-%s-%d", r, nodetest.Sanitize(mb.name), i)
				e := l.issue(token, mb.fn, clipArgs(mb.args))
				wg.Go(func() {
					rec, err := runMisbehaviour(t, c, n, mb, token, e)
					o := ctxOutcome(t.Context(), err)
					l.end(e, o, err)
					took := time.Since(e.issued)
					var re *rpc.Error
					errors.As(err, &re)
					switch {
					case o != mb.want:
						l.problem("%s: ended %s, want %s: %v", token, o, mb.want, err)
					case mb.kind != "" && (re == nil || re.Kind != mb.kind):
						l.problem("%s: error %v, want kind %s", token, err, mb.kind)
					case mb.signal != "" && (re == nil || re.Signal != mb.signal):
						l.problem("%s: error %v, want the process ended by %s", token, err, mb.signal)
					case mb.result != "" && (rec == nil || string(rec.Result) != mb.result):
						l.problem("%s: result %s, want %s", token, resultOf(rec), mb.result)
					case took > mb.within:
						l.problem("%s: took %s, want at most %s", token, took.Round(time.Millisecond), mb.within)
					}
					if mb.fn == "daemonize" && rec != nil {
						if gc, ok := grandchildOf(n, rec.ID); ok {
							if !nodetest.AwaitGone(gc, 5*time.Second) {
								l.problem("%s: the daemonized grandchild %d outlived its call by 5s: %v", token, gc, describeAll([]int{gc}))
							}
						} else {
							l.problem("%s: the grandchild recorded no PID", token)
						}
					}
				})
			}
		}
		wg.Wait()
		c.Close()
		series.rounds = append(series.rounds, idle(t, n, series.baseline.fds))
	}
	grandchildren := sc.rounds * sc.calls
	hwm := n.VmHWM(t)
	if hwm > maxFloodRSS {
		t.Errorf("noded's peak RSS was %.1f MiB while functions flooded it, want at most %d MiB: output is not bounded", float64(hwm)/(1<<20), maxFloodRSS>>20)
	}
	ta := l.check(t, n, nil, succeeded, failed, cancelled, aborted)
	series.checkGrowth(t, churn)
	left, zombies := waitNoLeftovers(n, 5*time.Second)
	var names []string
	for _, mb := range cases {
		names = append(names, mb.name)
	}
	report(t, row{
		scenario: "misbehaving functions",
		calls:    ta.calls,
		faults: fmt.Sprintf("%d rounds × %d each of: %s; %d daemonized grandchildren; peak RSS %.1f MiB",
			sc.rounds, sc.calls, strings.Join(names, ", "), grandchildren, float64(hwm)/(1<<20)),
		outcomes: ta.outcomes(),
		dups:     ta.dups,
		left:     len(left),
		zombies:  len(zombies),
		idle:     series.String(),
	})
}

// churn is the growth allowed in the misbehaving scenario, whose rounds
// each push tens of megabytes through noded's pipes and buffers at once.
// Its Go heap grows for about ten rounds, as buffer pools fill, then stays
// flat (with GOGC=10, 20 rounds of 80 calls: 9 MiB in use after round 1,
// 30 MiB by round 12, 27 to 30 MiB to round 20); RSS follows at the
// collector's pace.
var churn = growth{rssFactor: 2, rssSlack: 16 << 20, threadFactor: 1.5, goroutineSlack: 64}

// runMisbehaviour runs one call of mb to its end and returns its last
// record and error.
func runMisbehaviour(t *testing.T, c *master.Client, n *nodetest.Node, mb misbehaviour, token string, e *entry) (*rpc.Call, error) {
	ctx := t.Context()
	if !mb.cancel && mb.fn != "hang" {
		rec, err := c.Call(ctx, mb.fn, mb.args, master.CallOptions{AbortAfter: mb.abortAfter, RequestID: token})
		if rec != nil {
			e.setID(rec.ID)
		}
		return rec, err
	}
	begin := time.Now()
	rec, err := c.StartFunction(ctx, rpc.StartRequest{FnName: mb.fn, FnArgs: mb.args, AbortAfter: mb.abortAfter.Seconds(), RequestID: token})
	if err != nil {
		return nil, err
	}
	e.setID(rec.ID)
	// hang sets SIGTERM aside, and says so by recording its PID: the
	// SIGTERM of the cancel, or of the abort, must come after that, or
	// hang dies of it instead of the SIGKILL that follows.
	id, err := rpc.ParseCallID(rec.ID)
	if err != nil {
		return rec, err
	}
	if _, ok := n.AwaitPIDFile(strconv.Itoa(id.CPID), 10*time.Second); !ok {
		return rec, fmt.Errorf("%s recorded no PID within 10s", token)
	}
	if ready := time.Since(begin); mb.abortAfter > 0 && ready >= mb.abortAfter {
		return rec, fmt.Errorf("%s set its SIGTERM trap %s after its start, past abort_after %s", token, ready.Round(time.Millisecond), mb.abortAfter)
	}
	if mb.cancel {
		if _, err := c.CancelFunction(ctx, rec.ID); err != nil {
			return rec, err
		}
	}
	return c.Await(ctx, rec.ID, master.CallOptions{})
}

// grandchildOf returns the PID the daemonize function recorded for its
// grandchild in the call callID.
func grandchildOf(n *nodetest.Node, callID string) (int, bool) {
	id, err := rpc.ParseCallID(callID)
	if err != nil {
		return 0, false
	}
	return n.AwaitPIDFile(strconv.Itoa(id.CPID)+".grandchild", 0)
}

func resultOf(rec *rpc.Call) string {
	if rec == nil {
		return "(no record)"
	}
	return string(rec.Result)
}

func clipArgs(a json.RawMessage) string {
	if len(a) > 40 {
		return string(a[:40]) + "..."
	}
	return string(a)
}
