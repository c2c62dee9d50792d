package membership

import (
	"slices"
	"time"
)

// The back-off between failed hellos. Full jitter (a wait drawn
// uniformly from zero to the ceiling) spreads out the hellos of a fleet
// that lost its master at the same moment, so a restarted masterd is not
// met by every node at once.
const (
	// backoffBase is the first ceiling: a master that refused one hello
	// (a restart in progress, a standby) is usually ready again soon.
	backoffBase = 100 * time.Millisecond
	// backoffCap is the highest ceiling, reached after eight failures:
	// a node comes back within ten seconds of its master, and ten
	// thousand nodes that keep trying send a thousand hellos a second at
	// most, which masterd refuses cheaply.
	backoffCap = 10 * time.Second
	// electionStep is the highest step of the back-off once a standby
	// has answered not_active, a ceiling of 1.6 s. A standby that
	// answers reports a failover that ends within the lease TTL (5 s by
	// default): the election, and before it the lease of a dead active
	// master lapsing, while standbys still name it and the node finds
	// it refusing. After it the first hello to any master finds the
	// active one (a standby names it); backing off to the cap would
	// leave a node waiting up to 10 s past it. Ten thousand nodes
	// waiting out a failover so send some 12,500 hellos a second, for
	// the few seconds it lasts, each answered from memory.
	electionStep = 5
	// electionWindow is how long after the first failed hello standbys'
	// answers hold the back-off down. A failover ends well within it;
	// past it the masters are waiting for etcd, for as long as that
	// takes, and the back-off grows to its cap as after any failure.
	electionWindow = 30 * time.Second
)

// backoff returns the wait after the failed-th consecutive failure
// (from 1), drawn with rand, which returns a number in [0, n).
func backoff(failed int, rand func(n int64) int64) time.Duration {
	return time.Duration(rand(int64(ceiling(failed)) + 1))
}

// ceiling is the most backoff waits after failed failures: backoffBase
// doubled for each failure after the first, up to backoffCap.
func ceiling(failed int) time.Duration {
	c := backoffBase
	for i := 1; i < failed && c < backoffCap; i++ {
		c *= 2
	}
	return min(c, backoffCap)
}

// picker chooses the master to say hello to: the known masters in a
// random order, each once, then again in a new order. A node thus tries
// every master before any twice, and nodes that start together spread
// over them, as OpenPBS's MOMs pick among equal servers at random.
// A new round never starts with the master the last one ended with:
// with one master dead, two hellos in a row to it would add a second
// back-off before the node finds the active master after a failover.
type picker struct {
	rand  func(n int64) int64
	order []string
	// last is the master picked last in this run of rounds; "" after
	// reset.
	last string
}

// next returns the master to try now, among known (which must not be
// empty). A master no longer known is skipped.
func (p *picker) next(known []string) string {
	for len(p.order) > 0 {
		m := p.order[0]
		p.order = p.order[1:]
		if slices.Contains(known, m) {
			p.last = m
			return m
		}
	}
	p.order = append(p.order[:0], known...)
	for i := len(p.order) - 1; i > 0; i-- { // Fisher-Yates
		j := int(p.rand(int64(i + 1)))
		p.order[i], p.order[j] = p.order[j], p.order[i]
	}
	if n := len(p.order); n > 1 && p.order[0] == p.last {
		j := 1 + int(p.rand(int64(n-1)))
		p.order[0], p.order[j] = p.order[j], p.order[0]
	}
	p.last = p.order[0]
	p.order = p.order[1:]
	return p.last
}

// reset starts a new round, as after a session: the next hello goes to
// any master, the one just lost included.
func (p *picker) reset() { p.order, p.last = p.order[:0], "" }
