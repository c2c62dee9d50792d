package jobs

import (
	"fmt"

	"github.com/noderpc/noderpc/rpc"
)

// transitions lists every legal move of a call's state machine. A call is
// born running; it leaves running exactly once, and a finished call never
// moves again. Lost is not here: a daemon never holds a lost call, it only
// reports IDs of an earlier daemon as lost.
var transitions = map[rpc.State][]rpc.State{
	rpc.StateRunning: {rpc.StateSucceeded, rpc.StateFailed, rpc.StateCancelled, rpc.StateAborted},
}

// IllegalTransitionError is returned when something asks a call to move
// from a state it cannot leave, or into a state it cannot reach from there.
type IllegalTransitionError struct {
	ID       string
	From, To rpc.State
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("call %s: illegal transition %s -> %s", e.ID, e.From, e.To)
}

// checkTransition reports whether from -> to is legal.
func checkTransition(id string, from, to rpc.State) error {
	for _, s := range transitions[from] {
		if s == to {
			return nil
		}
	}
	return &IllegalTransitionError{ID: id, From: from, To: to}
}
