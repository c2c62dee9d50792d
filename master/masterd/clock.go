package masterd

import "time"

// Clock is the time masterd's sessions run on: the real one in the
// daemon, one a test moves by hand in the tests of expiry and holds.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call of AfterFunc.
type Timer interface {
	// Stop cancels the call, reporting whether it was still pending.
	Stop() bool
	// Reset makes the call happen d from now, pending or not.
	Reset(d time.Duration) bool
}

// realClock is the system's clock. A session's expiry is a runtime
// timer: the runtime keeps them in a heap, so 10,000 sessions cost no
// sweep, and a renewal only moves its own.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
