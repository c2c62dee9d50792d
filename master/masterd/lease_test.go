package masterd

import (
	"testing"
	"time"
)

// TestLeaseGuard checks the step-down rule on a fake clock: the guard
// fires once its limit has passed since the send time of the
// last answered keepalive, not since its answer, and an answer to an
// older keepalive moves nothing.
func TestLeaseGuard(t *testing.T) {
	clock := newFakeClock()
	const limit = time.Second
	fired := make(chan time.Time, 2)
	granted := clock.Now()
	g := newLeaseGuard(clock, limit, granted, func(last time.Time) { fired <- last })
	defer g.stop()
	notFired := func(what string) {
		t.Helper()
		select {
		case last := <-fired:
			t.Fatalf("%s: the guard fired (last answered keepalive sent at %s)", what, last)
		default:
		}
	}

	clock.Advance(limit / 2)
	sent := clock.Now() // a keepalive sent now...
	clock.Advance(limit / 4)
	g.answered(sent) // ...answered a quarter of the limit later
	clock.Advance(limit / 2)
	notFired("1.25 limits after the grant, 0.75 after the last answered send")
	g.answered(granted) // an older keepalive answered late
	clock.Advance(limit/4 - time.Millisecond)
	notFired("1 ms before the limit since the last answered send")
	clock.Advance(time.Millisecond)
	select {
	case last := <-fired:
		if !last.Equal(sent) {
			t.Errorf("the guard fired with the last answered send %s, want %s", last, sent)
		}
	default:
		t.Fatal("the guard did not fire at the limit since the last answered send")
	}
	g.answered(clock.Now())
	clock.Advance(10 * limit)
	notFired("after it fired once")
}

// TestLeaseTimings checks that an active master steps down at least a
// second before its lease could lapse, and renews it three times within
// what is left.
func TestLeaseTimings(t *testing.T) {
	for _, tc := range []struct {
		ttl, margin, interval time.Duration
	}{
		{2 * time.Second, time.Second, time.Second / 3},
		{5 * time.Second, 5 * time.Second / 3, (5*time.Second - 5*time.Second/3) / 3},
		{30 * time.Second, 10 * time.Second, 20 * time.Second / 3},
	} {
		got := timingsOf(tc.ttl)
		if got.margin != tc.margin || got.interval != tc.interval || got.limit() != tc.ttl-tc.margin {
			t.Errorf("timingsOf(%s) = margin %s, interval %s, limit %s; want %s, %s, %s", tc.ttl, got.margin, got.interval, got.limit(), tc.margin, tc.interval, tc.ttl-tc.margin)
		}
	}
}
