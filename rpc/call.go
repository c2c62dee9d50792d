package rpc

import (
	"time"

	"github.com/goccy/go-json"
)

// State is where a function call is in its life. A call starts running
// and ends in exactly one of the finished states; lost is reported for
// calls of an earlier daemon, which this one never held.
type State string

// The states of a call.
const (
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	StateAborted   State = "aborted"
	StateLost      State = "lost"
)

// Finished reports whether s is a terminal state.
func (s State) Finished() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateAborted, StateLost:
		return true
	}
	return false
}

// Call is the call record: the answer of StartFunction and WaitForFunction.
type Call struct {
	// ID is the function-call ID, "ppid:cpid:time:random".
	ID string `json:"id"`
	// FnName is the function that runs.
	FnName string `json:"fn_name"`
	// Finished is true once State is terminal.
	Finished bool `json:"finished"`
	// State is the call's state when the answer was made.
	State State `json:"state"`
	// Result is the function's JSON result, when it succeeded.
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why the call did not succeed, when it finished otherwise.
	Error *Error `json:"error,omitempty"`
	// Log holds the function's log lines from the request's log_offset on.
	Log []string `json:"log"`
	// LogOffset is the offset to ask from next time: the number of log
	// lines the function has written so far.
	LogOffset int `json:"log_offset"`
	// LogDropped counts lines between the request's offset and the first
	// line of Log that are no longer held (the daemon keeps a bounded tail).
	LogDropped int `json:"log_dropped,omitempty"`
	// RequestID is the start's request_id, if it had one.
	RequestID string `json:"request_id,omitempty"`
	// StartedAt is when the function process was started.
	StartedAt time.Time `json:"started_at"`
	// FinishedAt is when the call reached its terminal state.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Err returns the call's outcome as an error: nil while running or after
// success, the call's *Error otherwise.
func (c *Call) Err() error {
	if c.Error == nil {
		return nil
	}
	return c.Error
}

// CallSummary is one call in GET /ListCalls: no result, no log.
type CallSummary struct {
	ID         string     `json:"id"`
	FnName     string     `json:"fn_name"`
	State      State      `json:"state"`
	RequestID  string     `json:"request_id,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// ErrorKind is the kind of the call's error, when it did not succeed.
	ErrorKind Kind `json:"error_kind,omitempty"`
}

// ListCallsResponse is the answer of GET /ListCalls.
type ListCallsResponse struct {
	Calls []CallSummary `json:"calls"`
}

// VersionResponse is the answer of GET /Version.
type VersionResponse struct {
	// Version is the daemon's release.
	Version string `json:"version"`
	// Protocol is the ProtocolVersion the daemon speaks.
	Protocol int `json:"protocol"`
	// BootID is new each time the daemon starts: a changed BootID tells a
	// master that the node restarted and its running calls were lost.
	BootID string `json:"boot_id"`
	// StartedAt is when the daemon started.
	StartedAt time.Time `json:"started_at"`
	// PID is the daemon's process ID, the ppid of the IDs it issues.
	PID int `json:"pid"`
}
