package jobs

import (
	"sync"
	"syscall"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// call is one function call. Fields above mu never change after launch;
// the rest is guarded by mu.
type call struct {
	id         string
	fnName     string
	requestID  string
	started    time.Time
	proc       *process
	done       chan struct{} // closed when the call is finished
	reaped     chan struct{} // closed when its process is reaped and its cgroup gone
	abortTimer *time.Timer

	mu         sync.Mutex
	state      rpc.State
	result     json.RawMessage
	err        *rpc.Error
	finished   time.Time
	log        logTail
	logWake    chan struct{} // closed on the next log line; nil if nobody waits
	stopKind   rpc.Kind      // cancelled or aborted, once a stop was asked for
	stopReason string
	killTimer  *time.Timer
}

// stop asks the call to end as kind (cancelled or aborted): SIGTERM to the
// process group now, SIGKILL after grace. The first stop wins; stopping a
// finished or already stopping call does nothing.
func (c *call) stop(kind rpc.Kind, reason string, grace time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != rpc.StateRunning || c.stopKind != "" {
		return
	}
	c.stopKind, c.stopReason = kind, reason
	c.proc.signalGroup(syscall.SIGTERM)
	c.killTimer = time.AfterFunc(grace, c.proc.kill)
}

// finish moves the call to its terminal state and wakes every waiter. It
// refuses an illegal transition, which would be a bug in the supervisor.
func (c *call) finish(state rpc.State, result json.RawMessage, err *rpc.Error, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if terr := checkTransition(c.id, c.state, state); terr != nil {
		return terr
	}
	c.state, c.result, c.err, c.finished = state, result, err, now
	if c.abortTimer != nil {
		c.abortTimer.Stop()
	}
	if c.killTimer != nil {
		c.killTimer.Stop()
	}
	if c.logWake != nil {
		close(c.logWake)
		c.logWake = nil
	}
	close(c.done)
	return nil
}

// appendLog adds one line of the function's stderr.
func (c *call) appendLog(line string) {
	c.mu.Lock()
	c.log.add(line)
	if c.logWake != nil {
		close(c.logWake)
		c.logWake = nil
	}
	c.mu.Unlock()
}

// logWaiter returns a channel closed at the next log line, or has=true if
// lines past offset are already there.
func (c *call) logWaiter(offset int) (ch <-chan struct{}, has bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log.end() > offset || c.state.Finished() {
		return nil, true
	}
	if c.logWake == nil {
		c.logWake = make(chan struct{})
	}
	return c.logWake, false
}

// lastLog returns the last log line, if any.
func (c *call) lastLog() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.log.lines); n > 0 {
		return c.log.lines[n-1]
	}
	return ""
}

func (c *call) finishedAt() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finished, c.state.Finished()
}

// stopRequest returns the kind and reason of a requested stop, if any.
func (c *call) stopRequest() (rpc.Kind, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopKind, c.stopReason
}

// record snapshots the call for the wire, with log lines from offset on.
// The result is shared, not copied: it never changes once set.
func (c *call) record(offset int) *rpc.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &rpc.Call{
		ID:        c.id,
		FnName:    c.fnName,
		Finished:  c.state.Finished(),
		State:     c.state,
		Result:    c.result,
		Error:     c.err,
		LogOffset: c.log.end(),
		RequestID: c.requestID,
		StartedAt: c.started,
	}
	r.Log, r.LogDropped = c.log.since(offset)
	if r.Finished {
		fin := c.finished
		r.FinishedAt = &fin
	}
	return r
}

func (c *call) summary() rpc.CallSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := rpc.CallSummary{
		ID:        c.id,
		FnName:    c.fnName,
		State:     c.state,
		RequestID: c.requestID,
		StartedAt: c.started,
	}
	if c.state.Finished() {
		fin := c.finished
		s.FinishedAt = &fin
	}
	if c.err != nil {
		s.ErrorKind = c.err.Kind
	}
	return s
}
