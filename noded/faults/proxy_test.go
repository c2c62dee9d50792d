//go:build fault

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
)

// TestNetworkFaults puts a TCP proxy on 127.0.0.1 between the client and
// noded and drives calls through it in each of its modes:
//   - pass: the load succeeds as without the proxy;
//   - delay (150ms per chunk each way, within the socket timeout): the
//     load succeeds, only slower;
//   - stall: every call in flight and every start sent is reported
//     unreachable within MaxElapsed, and resumes once the proxy passes
//     again, having run once;
//   - reset: the node receives the requests and its answers are replaced
//     by a reset; starts are retried with their request_id and reported
//     unreachable, and once the proxy passes again the replayed start
//     answers the call the node already ran, which ran once.
func TestNetworkFaults(t *testing.T) {
	const timeout, maxElapsed = time.Second, 3 * time.Second
	for _, mode := range []nodetest.ProxyMode{nodetest.ProxyPass, nodetest.ProxyDelay, nodetest.ProxyStall, nodetest.ProxyReset} {
		t.Run(mode.String(), func(t *testing.T) {
			n := startNode(t, "--shutdown-grace", "1s", "--warm", "2")
			p := nodetest.StartProxy(t, n.Addr())
			c := newClient(t, p.Addr(), timeout, master.Policy{MaxElapsed: maxElapsed})
			calm := newClient(t, p.Addr(), calmTimeout, master.Policy{})
			l := newLedger()
			series := idleSeries{baseline: idle(t, n, 0)}
			var (
				faults  string
				allowed = []outcome{succeeded, cancelled}
			)
			switch mode {
			case nodetest.ProxyPass, nodetest.ProxyDelay:
				const d = 150 * time.Millisecond
				sc := pick(scale{rounds: 2, calls: 32, concurrency: 8}, scale{rounds: 8, calls: 120, concurrency: 16})
				if mode == nodetest.ProxyDelay {
					p.Set(nodetest.ProxyDelay, d)
				}
				series.loadRounds(t, n, calm, l, sc, 0.1)
				faults = fmt.Sprintf("%d rounds × %d at once through the proxy; %d connections", sc.rounds, sc.concurrency, p.Accepted())
				if mode == nodetest.ProxyDelay {
					start := time.Now()
					if _, err := calm.Version(t.Context()); err != nil {
						t.Fatal(err)
					}
					if rtt := time.Since(start); rtt < 2*d {
						t.Errorf("a Version round trip through the delaying proxy took %s, want at least %s: the delay was not applied", rtt, 2*d)
					}
					faults = fmt.Sprintf("%s delay each way; ", d) + faults
				}
			case nodetest.ProxyStall, nodetest.ProxyReset:
				sc := pick(scale{rounds: 2, calls: 6}, scale{rounds: 8, calls: 16})
				var st outageStats
				for r := 1; r <= sc.rounds; r++ {
					outageRound(t, c, calm, l, fmt.Sprintf("r%d", r), sc.calls, maxElapsed,
						func() { p.Set(mode, 0) },
						func() { p.Set(nodetest.ProxyPass, 0) }, &st)
					c.Close()
					calm.Close()
					series.rounds = append(series.rounds, idle(t, n, series.baseline.fds))
				}
				allowed = []outcome{unreachable, succeeded}
				faults = fmt.Sprintf("%d %s phases, each with %d calls running and %d starts sent into it; socket timeout %s, MaxElapsed %s; slowest report %s",
					st.faults, mode, sc.calls, sc.calls, timeout, maxElapsed, st.worst.Round(10*time.Millisecond))
				if mode == nodetest.ProxyReset {
					if p.Resets() == 0 {
						t.Errorf("the proxy reset no connection")
					}
					faults += fmt.Sprintf("; %d answers reset", p.Resets())
				}
			}
			ta := l.check(t, n, nil, allowed...)
			series.checkGrowth(t, steady)
			left, zombies := waitNoLeftovers(n, 5*time.Second)
			report(t, row{
				scenario: "TCP proxy, mode " + mode.String(),
				calls:    ta.calls,
				faults:   faults,
				outcomes: ta.outcomes(),
				dups:     ta.dups,
				left:     len(left),
				zombies:  len(zombies),
				idle:     series.String(),
			})
		})
	}
}
