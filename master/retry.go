package master

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is how one procedure is retried after a transport failure or a
// busy answer. Zero fields take the procedure's default from
// [DefaultRetryPolicies].
type Policy struct {
	// MaxAttempts caps the requests sent, the first one included; 1 means
	// no retry.
	MaxAttempts int
	// MaxElapsed caps the time from the first request to giving up,
	// back-off included: no attempt runs past it. It is the bound within
	// which a node that answers nothing is reported unreachable, and must
	// be at least [Options.Timeout].
	MaxElapsed time.Duration
	// BaseDelay caps the back-off before the first retry; the cap doubles
	// with each retry up to MaxDelay. The delay itself is drawn uniformly
	// between 0 and the cap ("full jitter"), so that masters retrying
	// against one recovering node spread out instead of arriving together.
	BaseDelay time.Duration
	// MaxDelay is the largest back-off cap.
	MaxDelay time.Duration
}

// RetryPolicies holds one [Policy] per procedure; List is the policy of
// both ListFunctions and ListCalls. All procedures are safe to retry:
// Wait, List and Version only read; Cancel and Release reach the
// same end however often they are sent; and the client gives every
// StartFunction a request_id, so a retried start answers the first
// call's record instead of running the function twice.
type RetryPolicies struct {
	Start, Wait, Cancel, Release, List, Version Policy
}

// DefaultRetryPolicies returns the policies a zero [Options.Retry] gets.
// They suit the default socket timeout of 10s: a node that stops
// answering is given up on 30s after its last answer for a call in
// progress, and 20s for a look-up (doc/client.md has the table).
func DefaultRetryPolicies() RetryPolicies {
	call := Policy{MaxAttempts: 5, MaxElapsed: 30 * time.Second, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
	lookup := Policy{MaxAttempts: 3, MaxElapsed: 20 * time.Second, BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second}
	return RetryPolicies{Start: call, Wait: call, Cancel: call, Release: call, List: lookup, Version: lookup}
}

// withDefaults fills the zero fields of p from def and checks the result
// against the socket timeout.
func (p Policy) withDefaults(def Policy, timeout time.Duration, name string) (Policy, error) {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = max(def.MaxElapsed, timeout)
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = def.BaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = max(def.MaxDelay, p.BaseDelay)
	}
	switch {
	case p.MaxAttempts < 1:
		return p, fmt.Errorf("master: %s retry policy: MaxAttempts must be at least 1, got %d", name, p.MaxAttempts)
	case p.MaxElapsed < timeout:
		return p, fmt.Errorf("master: %s retry policy: MaxElapsed %s is shorter than the socket timeout %s", name, p.MaxElapsed, timeout)
	case p.BaseDelay < 0 || p.MaxDelay < p.BaseDelay:
		return p, fmt.Errorf("master: %s retry policy: want 0 <= BaseDelay <= MaxDelay, got %s and %s", name, p.BaseDelay, p.MaxDelay)
	}
	return p, nil
}

// backoff returns the delay before retry number retry (1 for the first
// retry): uniform in [0, min(MaxDelay, BaseDelay·2^(retry-1))). randN
// returns a uniform value in [0, n).
func (p Policy) backoff(retry int, randN func(n int64) int64) time.Duration {
	ceiling := p.BaseDelay
	for i := 1; i < retry && ceiling < p.MaxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.MaxDelay)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(randN(int64(ceiling)))
}

// clock is the time source of the retry logic, a seam for tests that
// check back-off without sleeping.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends, and returns ctx's error if it ended.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ clock = realClock{}

// randN is the default jitter source.
func randN(n int64) int64 { return rand.Int64N(n) }
