//go:build fault

package faults

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
)

// survivalBound is how long after the next noded listens a process of a
// SIGKILLed one may still run: the parent-death signal is delivered at
// once, and the next noded kills the dead one's cgroups before it listens.
const survivalBound = 500 * time.Millisecond

// waitRunning polls noded's /metrics until at least k calls run.
func waitRunning(t *testing.T, n *nodetest.Node, k int) {
	t.Helper()
	n.AwaitMetric(t, "noded_calls_running", fmt.Sprintf("at least %d", k), func(v float64) bool { return int(v) >= k })
}

// resumeAll resumes every call the client last saw unreachable.
func resumeAll(t *testing.T, c *master.Client, l *ledger) {
	t.Helper()
	for _, e := range l.unresolved() {
		resume(t.Context(), t, c, l, e)
	}
}

// TestKillMidLoad SIGKILLs noded while calls run and restarts it on the
// same address at once, round after round. Every call of the dead daemon
// that had not ended must be reported lost (or first unreachable, then
// lost once awaited again), none may hang, and no process of the dead
// daemon may survive the restart: its function processes die of their
// parent-death signal, and their children, which only the cgroup holds,
// are killed by the next noded when it starts.
//
// It runs with each containment: cgroup (the default where cgroups v2 can
// be had, as here) and process-group, the fallback elsewhere.
func TestKillMidLoad(t *testing.T) {
	for _, containment := range []string{"cgroup", "process-group"} {
		t.Run(containment, func(t *testing.T) { testKillMidLoad(t, containment) })
	}
}

func testKillMidLoad(t *testing.T, containment string) {
	sc := pick(scale{rounds: 3, calls: 24, concurrency: 8}, scale{rounds: 12, calls: 80, concurrency: 16})
	n := startNode(t, "--max-running", "64", "--shutdown-grace", "1s", "--warm", "2", "--containment", containment)
	c := newClient(t, n.Addr(), calmTimeout, master.Policy{})
	l := newLedger()
	series := idleSeries{baseline: idle(t, n, 0)}
	var (
		killed            []int
		survivors, zombie int
		lostTotal         int
	)
	for r := 1; r <= sc.rounds; r++ {
		ld := &load{
			c: c, l: l, prefix: fmt.Sprintf("r%d", r),
			calls: sc.calls, concurrency: sc.concurrency,
			// Calls sleep longer than the check below waits, so a
			// survivor cannot pass for gone by having ended by itself.
			minSleep: time.Second, maxSleep: 3 * time.Second,
			replayP: 0.2, cancelP: 0.1, releaseP: 0.1,
			after: make(chan struct{}), afterN: int64(sc.calls / 2),
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			ld.run(t.Context())
		}()
		select {
		case <-ld.after:
		case <-done:
			t.Fatalf("round %d: the load ended before the kill", r)
		}
		waitRunning(t, n, sc.concurrency/2)
		dead := n.PID()
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		killed = append(killed, dead)
		if err := n.Relaunch(); err != nil {
			t.Fatal(err)
		}
		left := waitNoSurvivors(n, survivalBound)
		survivors += len(left)
		if len(left) > 0 {
			t.Errorf("round %d: processes of noded %d survived it and the start of its successor: %v", r, dead, describeAll(left))
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-done:
		case <-time.After(callBound + 30*time.Second):
			t.Fatalf("round %d: the load did not end within %s of the kill", r, callBound+30*time.Second)
		}
		resumeAll(t, c, l)
		lostHere := 0
		for _, e := range l.ofDaemon(dead) {
			if _, final := e.outcomes(); final == lost {
				lostHere++
			}
		}
		if lostHere == 0 {
			t.Errorf("round %d: no call of the killed noded %d was reported lost", r, dead)
		}
		lostTotal += lostHere
		c.Close()
		series.rounds = append(series.rounds, idle(t, n, series.baseline.fds))
	}
	_, zombies := waitNoLeftovers(n, 5*time.Second)
	zombie = len(zombies)
	ta := l.check(t, n, killed, succeeded, cancelled, lost, unreachable)
	series.checkGrowth(t, steady)
	report(t, row{
		scenario: "noded SIGKILLed mid-load, restarted on the same address (--containment " + containment + ")",
		calls:    ta.calls,
		faults:   fmt.Sprintf("%d SIGKILLs with ≥ %d calls running; %d replays, %d cancels", len(killed), sc.concurrency/2, ta.actions["replays"], ta.actions["cancels"]),
		outcomes: ta.outcomes() + fmt.Sprintf("; lost of the dead daemons %d", lostTotal),
		dups:     ta.dups,
		reruns:   ta.reruns,
		left:     survivors,
		zombies:  zombie,
		idle:     series.String(),
	})
}
