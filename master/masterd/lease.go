package masterd

import (
	"sync"
	"time"
)

// leaseGuard tells an active master when to stop acting as one: before
// its etcd lease could have expired at the etcd server, and so before
// any other master could be elected.
//
// etcd refreshes a lease to its full TTL when it receives a keepalive,
// so a lease whose keepalive sent at time S was answered lives at least
// until S + TTL, whatever the network did since. The guard keeps the
// send time of the latest answered keepalive and fires once limit (the
// TTL less a margin) has passed since it. The etcd client's
// own session counts from the time an answer arrived, which is later
// than the server's refresh by a whole round trip: too late to rely on.
type leaseGuard struct {
	clock Clock
	limit time.Duration
	// lapse is called once, on a timer's goroutine, when the guard
	// fires.
	lapse func(last time.Time)

	mu    sync.Mutex
	last  time.Time // send time of the latest answered keepalive
	timer Timer
	done  bool
}

// newLeaseGuard starts a guard whose lease was granted by a request
// sent at granted.
func newLeaseGuard(clock Clock, limit time.Duration, granted time.Time, lapse func(last time.Time)) *leaseGuard {
	g := &leaseGuard{clock: clock, limit: limit, lapse: lapse, last: granted}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer = clock.AfterFunc(granted.Add(limit).Sub(clock.Now()), g.fire)
	return g
}

// answered records that the keepalive sent at sent was answered.
// Answers may come out of order: an older one moves nothing.
func (g *leaseGuard) answered(sent time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done || !sent.After(g.last) {
		return
	}
	g.last = sent
	g.timer.Reset(sent.Add(g.limit).Sub(g.clock.Now()))
}

// lastAnswered is the send time of the latest answered keepalive.
func (g *leaseGuard) lastAnswered() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

// holds reports whether the lease is still sure to be held: the guard
// has not fired and its deadline has not passed. A masterd that was
// frozen (SIGSTOP, a paused VM) may wake with requests and a held
// renewal ready to answer in the same instant as the guard's timer;
// the request path asks this before answering as the active master,
// so none answers on a lease that may have lapsed.
func (g *leaseGuard) holds() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.done && g.clock.Now().Before(g.last.Add(g.limit))
}

func (g *leaseGuard) fire() {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return
	}
	if left := g.last.Add(g.limit).Sub(g.clock.Now()); left > 0 {
		// An answer moved the deadline as the timer fired.
		g.timer.Reset(left)
		g.mu.Unlock()
		return
	}
	g.done = true
	last := g.last
	g.mu.Unlock()
	g.lapse(last)
}

// stop ends the guard without firing it.
func (g *leaseGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
	g.timer.Stop()
}

// leaseTimings are the timings a lease of ttl is kept with.
type leaseTimings struct {
	ttl time.Duration
	// margin is how long before the earliest expiry of its lease an
	// active master steps down: a third of the TTL, at least 1 s, room
	// for a stalled process or a slow log line.
	margin time.Duration
	// interval is the time between keepalives: three fit in TTL - margin,
	// the third sent as it ends, so one lost keepalive does not depose
	// a master and two lost in a row do.
	interval time.Duration
}

func timingsOf(ttl time.Duration) leaseTimings {
	margin := max(ttl/3, time.Second)
	return leaseTimings{ttl: ttl, margin: margin, interval: (ttl - margin) / 3}
}

// limit is how long after the send of its last answered keepalive an
// active master stops acting as one.
func (t leaseTimings) limit() time.Duration { return t.ttl - t.margin }
