//go:build fault

package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
)

// growth is how much noded's idle usage may grow from round 2 (round 1
// warms noded up: its first connections, the Go heap, the runtime's
// threads) to any later round before the suite calls it a leak.
type growth struct {
	rssFactor float64 // round N's RSS at most this times round 2's...
	rssSlack  int64   // ...plus this many bytes
	// threadFactor bounds threads likewise, with at least 4 more
	// allowed. Threads never shrink: a later round that happens to block
	// more goroutines in system calls at once raises them for good.
	threadFactor float64
	// goroutineSlack is how many more goroutines than round 2 (or idle)
	// may be left: the HTTP server's idle workers linger for 10s after a
	// burst, one per connection of the burst.
	goroutineSlack int
}

// steady is the growth allowed where every round does the same work.
var steady = growth{rssFactor: 1.25, rssSlack: 8 << 20, threadFactor: 1.25, goroutineSlack: 64}

// maxFloodRSS bounds noded's peak RSS while functions flood it.
const maxFloodRSS = 96 << 20

// idleSeries is noded's idle usage after each round of a scenario.
type idleSeries struct {
	baseline usage // before the first round
	rounds   []usage
}

// String formats the series as "idle 14/7/9/9.1MiB; r2 ...; rN ...".
func (s idleSeries) String() string {
	parts := []string{"idle " + s.baseline.String()}
	if len(s.rounds) >= 2 {
		parts = append(parts, "r2 "+s.rounds[1].String())
	}
	if len(s.rounds) == 1 || len(s.rounds) > 2 {
		parts = append(parts, fmt.Sprintf("r%d %s", len(s.rounds), s.rounds[len(s.rounds)-1]))
	}
	return strings.Join(parts, "; ")
}

// loadRounds runs sc's rounds of load on n through c, recorded in l:
// calls that sleep 20 to 300ms, a fifth of them replayed, churn of them
// cancelled and as many released while running. After each round it
// closes c's idle connections and adds noded's idle usage to s.
func (s *idleSeries) loadRounds(t *testing.T, n *nodetest.Node, c *master.Client, l *ledger, sc scale, churn float64) {
	t.Helper()
	for r := 1; r <= sc.rounds; r++ {
		ld := &load{
			c: c, l: l, prefix: fmt.Sprintf("r%d", r),
			calls: sc.calls, concurrency: sc.concurrency,
			minSleep: 20 * time.Millisecond, maxSleep: 300 * time.Millisecond,
			replayP: 0.2, cancelP: churn, releaseP: churn,
		}
		ld.run(t.Context())
		c.Close()
		s.rounds = append(s.rounds, idle(t, n, s.baseline.fds))
	}
}

// checkGrowth fails the test if any round holds more descriptors than
// idle noded, or any round after the second more threads, goroutines or
// memory than round 2 allows.
func (s idleSeries) checkGrowth(t *testing.T, g growth) {
	t.Helper()
	for i, u := range s.rounds {
		r := i + 1
		if u.fds != s.baseline.fds {
			t.Errorf("round %d: noded holds %d file descriptors when idle, want its idle level %d", r, u.fds, s.baseline.fds)
		}
		if r <= 2 {
			continue
		}
		r2 := s.rounds[1]
		if limit := max(r2.goroutines, s.baseline.goroutines) + g.goroutineSlack; u.goroutines > limit {
			t.Errorf("round %d: noded has %d goroutines when idle, round 2 had %d: more than %d more (lingering server workers)",
				r, u.goroutines, r2.goroutines, g.goroutineSlack)
		}
		if limit := max(int(float64(r2.threads)*g.threadFactor), r2.threads+4); u.threads > limit {
			t.Errorf("round %d: noded has %d threads, round 2 had %d: over the %d allowed", r, u.threads, r2.threads, limit)
		}
		if limit := int64(float64(r2.rss)*g.rssFactor) + g.rssSlack; u.rss > limit {
			t.Errorf("round %d: noded's RSS is %.1f MiB, round 2's was %.1f MiB: over the %.1f MiB allowed",
				r, mib(u.rss), mib(r2.rss), mib(limit))
		}
	}
}

// TestLoadAboveLimit runs rounds of load at three times --max-running,
// with random cancels, releases and request_id replays, so that busy
// answers and the client's back-off happen; every call must end once, run
// once, and leave nothing behind, and noded must come back to the same
// idle usage after each round.
func TestLoadAboveLimit(t *testing.T) {
	sc := pick(scale{rounds: 4, calls: 48, concurrency: 12}, scale{rounds: 10, calls: 120, concurrency: 16})
	const maxRunning = 4
	n := startNode(t, "--max-running", fmt.Sprint(maxRunning), "--shutdown-grace", "1s", "--warm", "2")
	// Busy answers say Retry-After 1s; the start's policy outlasts a
	// queue of three times the limit.
	c := newClient(t, n.Addr(), calmTimeout, master.Policy{MaxAttempts: 40, MaxElapsed: 60 * time.Second, MaxDelay: 2 * time.Second})
	l := newLedger()
	series := idleSeries{baseline: idle(t, n, 0)}
	series.loadRounds(t, n, c, l, sc, 0.15)
	m, err := n.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	busy := int(m[`noded_calls_rejected_total{reason="busy"}`])
	if busy == 0 {
		t.Errorf("no start was answered busy: the load of %d at once never passed --max-running %d", sc.concurrency, maxRunning)
	}
	ta := l.check(t, n, nil, succeeded, cancelled)
	series.checkGrowth(t, steady)
	left, zombies := waitNoLeftovers(n, 5*time.Second)
	if len(left) > 0 {
		t.Errorf("processes left after every call ended: %v", describeAll(left))
	}
	report(t, row{
		scenario: "load above --max-running 4, random cancel/release/replay",
		calls:    ta.calls,
		faults: fmt.Sprintf("%d rounds × %d at once; busy answers %d; replays %d, cancels %d, releases refused while running %d, explicit releases %d",
			sc.rounds, sc.concurrency, busy, ta.actions["replays"], ta.actions["cancels"], ta.actions["releases of running calls"], ta.actions["explicit releases"]),
		outcomes: ta.outcomes(),
		dups:     ta.dups,
		left:     len(left),
		zombies:  len(zombies),
		idle:     series.String(),
	})
}
