//go:build fault

package faults

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// outcome is how a call ended, as the client learned it.
type outcome string

// The terminal outcomes a client can know, and two that must never be
// seen: a call that got no outcome in time, and an error outside the
// documented kinds.
const (
	succeeded   outcome = "succeeded"
	failed      outcome = "failed"
	cancelled   outcome = "cancelled"
	aborted     outcome = "aborted"
	lost        outcome = "lost"
	unreachable outcome = "unreachable"
	refused     outcome = "refused" // busy after every retry: never started
	hung        outcome = "hung"
	unexpected  outcome = "unexpected"
)

// classify maps a procedure's error to its outcome.
func classify(err error) outcome {
	var ce *master.CallError
	switch {
	case err == nil:
		return succeeded
	case errors.As(err, &ce):
		return kindOutcome(ce.Err.Kind)
	case errors.Is(err, rpc.ErrUnreachable):
		return unreachable
	}
	if k := rpc.KindOf(err); k != "" {
		if o := kindOutcome(k); o != unexpected {
			return o
		}
		if k == rpc.KindBusy {
			return refused
		}
	}
	return unexpected
}

// kindOutcome maps the kind of a call's error to its outcome.
func kindOutcome(k rpc.Kind) outcome {
	switch k {
	case rpc.KindFunctionFailed, rpc.KindProtocolError, rpc.KindResultTooLarge:
		return failed
	case rpc.KindCancelled:
		return cancelled
	case rpc.KindAborted:
		return aborted
	case rpc.KindLost:
		return lost
	}
	return unexpected
}

// entry is one StartFunction the load issued.
type entry struct {
	token string // the call's token: its request_id and its runs file
	fn    string
	args  string // fn_args, for messages

	mu      sync.Mutex
	callID  string
	first   outcome // the first terminal outcome reported
	final   outcome // the outcome after resuming an unreachable call
	err     error   // the error of the first outcome
	reports int     // how many terminal outcomes were reported
	took    time.Duration
	issued  time.Time
}

// setID records the call's ID; a second, different one is a failure of
// request_id idempotency.
func (e *entry) setID(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.callID != "" && e.callID != id {
		return fmt.Errorf("call %s: start with request_id %s answered ID %s, earlier %s: the function was started twice", e.token, e.token, id, e.callID)
	}
	e.callID = id
	return nil
}

// ID returns the call's ID, "" if no start was answered.
func (e *entry) ID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.callID
}

// ledger accounts for every StartFunction of a scenario.
type ledger struct {
	mu       sync.Mutex
	entries  []*entry
	byToken  map[string]*entry
	problems []string
	counts   map[string]int // actions: replays, cancels, releases, ...
}

func newLedger() *ledger {
	return &ledger{byToken: make(map[string]*entry), counts: make(map[string]int)}
}

// issue records a StartFunction about to be sent.
func (l *ledger) issue(token, fn, args string) *entry {
	e := &entry{token: token, fn: fn, args: args, issued: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byToken[token] != nil {
		panic("faults: token issued twice: " + token)
	}
	l.byToken[token] = e
	l.entries = append(l.entries, e)
	return e
}

// end records e's first terminal outcome. A second report is a failure:
// a call has exactly one end.
func (l *ledger) end(e *entry, o outcome, err error) {
	e.mu.Lock()
	e.reports++
	n := e.reports
	if n == 1 {
		e.first, e.final, e.err, e.took = o, o, err, time.Since(e.issued)
	}
	e.mu.Unlock()
	if n > 1 {
		l.problem("call %s (%s): a second terminal outcome %s (%v)", e.token, e.ID(), o, err)
	}
	if o == unexpected || o == hung {
		l.problem("call %s (%s %s, ID %q): outcome %s: %v", e.token, e.fn, e.args, e.ID(), o, err)
	}
}

// unresolved returns the entries whose last outcome is unreachable: the
// client does not know yet how they ended.
func (l *ledger) unresolved() []*entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*entry
	for _, e := range l.entries {
		e.mu.Lock()
		if e.reports > 0 && e.final == unreachable {
			out = append(out, e)
		}
		e.mu.Unlock()
	}
	return out
}

// ofDaemon returns the entries whose call ID was issued by noded pid.
func (l *ledger) ofDaemon(pid int) []*entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*entry
	for _, e := range l.entries {
		if id, err := rpc.ParseCallID(e.ID()); err == nil && id.PPID == pid {
			out = append(out, e)
		}
	}
	return out
}

// outcomes returns e's first and final outcomes.
func (e *entry) outcomes() (first, final outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first, e.final
}

// resumed records the outcome of a call resumed after an unreachable one.
func (l *ledger) resumed(e *entry, o outcome, err error) {
	e.mu.Lock()
	e.final = o
	e.mu.Unlock()
	if o == unexpected || o == hung || o == unreachable {
		l.problem("call %s (%s): resumed to %s: %v", e.token, e.ID(), o, err)
	}
}

// problem records an accounting failure, reported by check.
func (l *ledger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// count adds one to the counter of an action.
func (l *ledger) count(action string) {
	l.mu.Lock()
	l.counts[action]++
	l.mu.Unlock()
}

// tally is the accounting of a scenario.
type tally struct {
	calls   int
	first   map[outcome]int
	final   map[outcome]int
	dups    int // ran twice on one daemon
	reruns  int // ran on a dead daemon and again on the next one
	actions map[string]int
}

// outcomes formats the outcomes, with resumed unreachable calls as
// "unreachable 5 (resumed: succeeded 5)".
func (ta tally) outcomes() string {
	var parts []string
	for _, o := range []outcome{succeeded, failed, cancelled, aborted, lost, unreachable, refused, hung, unexpected} {
		if n := ta.first[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
	}
	s := strings.Join(parts, ", ")
	if ta.first[unreachable] > 0 {
		var res []string
		for _, o := range []outcome{succeeded, failed, cancelled, aborted, lost} {
			if n := ta.final[o] - ta.first[o]; n > 0 {
				res = append(res, fmt.Sprintf("%s %d", o, n))
			}
		}
		s += " (unreachable resumed: " + strings.Join(res, ", ") + ")"
	}
	return s
}

// check settles the accounting of every call against the runs the
// scripts recorded: each call has exactly one outcome among allowed, none
// ran twice on one daemon, a succeeded call ran, a refused one did not.
// killed lists the noded PIDs the scenario SIGKILLed: a start in flight
// across a restart may run once on the dead daemon and once on the next
// (doc/client.md, "Restarts"), which is counted, not failed.
func (l *ledger) check(t *testing.T, n *nodetest.Node, killed []int, allowed ...outcome) tally {
	t.Helper()
	l.mu.Lock()
	entries := append([]*entry(nil), l.entries...)
	problems := append([]string(nil), l.problems...)
	ta := tally{calls: len(entries), first: map[outcome]int{}, final: map[outcome]int{}, actions: map[string]int{}}
	for k, v := range l.counts {
		ta.actions[k] = v
	}
	l.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		first, final, reports, err, id := e.first, e.final, e.reports, e.err, e.callID
		e.mu.Unlock()
		if reports == 0 {
			first, final = hung, hung
			problems = append(problems, fmt.Sprintf("call %s (%s %s, ID %q): no outcome at all", e.token, e.fn, e.args, id))
		}
		ta.first[first]++
		ta.final[final]++
		if !slices.Contains(allowed, first) || (final != first && !slices.Contains(allowed, final)) {
			problems = append(problems, fmt.Sprintf("call %s (%s %s, ID %q): outcome %s (then %s), want one of %v: %v", e.token, e.fn, e.args, id, first, final, allowed, err))
		}
		if e.fn != "work" {
			continue // only work records its runs
		}
		runs := runsOf(n, e.token)
		perNoded := map[int]int{}
		for _, r := range runs {
			perNoded[r.noded]++
		}
		for pid, c := range perNoded {
			if c > 1 {
				ta.dups++
				problems = append(problems, fmt.Sprintf("call %s (ID %q): ran %d times on noded %d: %v", e.token, id, c, pid, runs))
			}
		}
		if len(perNoded) > 1 {
			var dead int
			for pid := range perNoded {
				if slices.Contains(killed, pid) {
					dead++
				}
			}
			if dead >= len(perNoded)-1 {
				ta.reruns++
			} else {
				ta.dups++
				problems = append(problems, fmt.Sprintf("call %s (ID %q): ran on several live daemons: %v", e.token, id, runs))
			}
		}
		if cid, err := rpc.ParseCallID(id); err == nil && final == succeeded {
			// The call the client knows must be the run that happened:
			// the work script is the function process, so its PID is the
			// ID's cpid.
			found := false
			for _, r := range runs {
				found = found || (r.noded == cid.PPID && r.pid == cid.CPID)
			}
			if !found {
				problems = append(problems, fmt.Sprintf("call %s (ID %q): succeeded, but no run of that process was recorded: %v", e.token, id, runs))
			}
		}
		switch {
		case final == succeeded && len(runs) == 0:
			problems = append(problems, fmt.Sprintf("call %s (ID %q): succeeded without running", e.token, id))
		case first == refused && len(runs) > 0:
			problems = append(problems, fmt.Sprintf("call %s: refused busy, yet it ran: %v", e.token, runs))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		const max = 30
		more := ""
		if len(problems) > max {
			more = fmt.Sprintf("\n  ... and %d more", len(problems)-max)
			problems = problems[:max]
		}
		t.Errorf("accounting of %d calls found %d problems:\n  %s%s", len(entries), len(problems), strings.Join(problems, "\n  "), more)
	}
	return ta
}
