package jobs

import (
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// Observer is told what happens to calls, for metrics. Its methods are
// called on the hot path of every call and must not block.
type Observer interface {
	// CallStarted is called once a function process runs; spawn is how
	// long starting it took.
	CallStarted(fn string, spawn time.Duration)
	// CallFinished is called once a call reached its terminal state.
	CallFinished(fn string, state rpc.State, errKind rpc.Kind, duration time.Duration)
	// CallRejected is called when a start is refused before any process
	// runs; reason is the error kind (busy, shutting_down, ...).
	CallRejected(fn string, reason rpc.Kind)
	// CallReleased is called when a finished call is dropped, released
	// by a client or expired after the retention period.
	CallReleased(fn string, expired bool)
}

// nopObserver is the Observer of a table that has none.
type nopObserver struct{}

func (nopObserver) CallStarted(string, time.Duration)                       {}
func (nopObserver) CallFinished(string, rpc.State, rpc.Kind, time.Duration) {}
func (nopObserver) CallRejected(string, rpc.Kind)                           {}
func (nopObserver) CallReleased(string, bool)                               {}

var _ Observer = nopObserver{}
