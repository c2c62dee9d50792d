package master

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// ErrOffline is matched (errors.Is) by the error of any procedure on a
// node marked offline with [Client.SetOffline]: the client answers it
// without touching the network, as Ganeti's RPC layer does for offline
// nodes.
var ErrOffline = errors.New("node is marked offline")

// UnreachableError says that a node did not answer a procedure within its
// retry policy: every attempt failed in transport (refused, reset, no
// answer within the socket timeout). It matches rpc.ErrUnreachable with
// errors.Is and also unwraps to the last attempt's cause, so
// errors.Is(err, syscall.ECONNREFUSED) works too.
type UnreachableError struct {
	// Node is the node's host:port.
	Node string
	// Procedure is the path of the procedure that failed, e.g. rpc.PathWaitForFunction.
	Procedure string
	// Attempts is how many requests were sent.
	Attempts int
	// Elapsed is the time from the first attempt to giving up.
	Elapsed time.Duration
	// Err is the last attempt's failure.
	Err error
}

// Error reads "node1:1811: unreachable after 4 attempts over 21s:
// connection refused".
func (e *UnreachableError) Error() string {
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("%s: unreachable after %d %s over %s: %s",
		e.Node, e.Attempts, attempts, roundDuration(e.Elapsed), describeTransport(e.Err))
}

// Unwrap returns the unreachable kind and the last cause, so that both
// errors.Is(err, rpc.ErrUnreachable) and rpc.KindOf(err) see the kind.
func (e *UnreachableError) Unwrap() []error {
	return []error{&rpc.Error{Kind: rpc.KindUnreachable, Message: describeTransport(e.Err)}, e.Err}
}

// ErrAnswerTooLarge is matched (errors.Is) by the error of a procedure
// whose node sent an answer larger than [Options.MaxAnswer]: an
// [*AnswerTooLargeError].
var ErrAnswerTooLarge = errors.New("answer larger than the client's limit")

// AnswerTooLargeError says that a node answered a procedure with a body
// larger than [Options.MaxAnswer]: it declared a larger Content-Length,
// and the client read none of it, or it sent its body without a length
// and the client stopped one byte past the limit. The connection is
// dropped and the procedure is not retried: no noded sends such an
// answer, and the same node would send it again. Its kind is
// rpc.KindProtocolError; it matches both rpc.ErrProtocolError and
// [ErrAnswerTooLarge] with errors.Is.
type AnswerTooLargeError struct {
	// Node is the node's host:port.
	Node string
	// Procedure is the procedure answered, e.g. "WaitForFunction".
	Procedure string
	// Limit is the client's bound, Options.MaxAnswer.
	Limit int64
	// Declared is the body's declared length, or -1 if the node sent it
	// chunked or until the connection closed.
	Declared int64
}

// Error reads "node1:1811: WaitForFunction: protocol_error: the node
// declared an answer of 2000000000 bytes, over the client's limit of
// 41438752 (Options.MaxAnswer)".
func (e *AnswerTooLargeError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Node, e.Procedure, e.kind())
}

// Unwrap returns the protocol_error kind and ErrAnswerTooLarge.
func (e *AnswerTooLargeError) Unwrap() []error {
	return []error{e.kind(), ErrAnswerTooLarge}
}

func (e *AnswerTooLargeError) kind() *rpc.Error {
	return &rpc.Error{Kind: rpc.KindProtocolError, Message: (&tooLargeAnswer{limit: e.Limit, declared: e.Declared}).Error()}
}

// CallError says how a call that finished without succeeding ended, or
// that the node lost it. It unwraps to the node's *rpc.Error, so
// errors.Is(err, rpc.ErrFunctionFailed), errors.Is(err, rpc.ErrLost) and
// friends tell the cases apart, and errors.As reaches ExitCode and Signal.
type CallError struct {
	// Node is the node's host:port.
	Node string
	// ID is the function-call ID.
	ID string
	// FnName is the function that was called.
	FnName string
	// Err is how the call ended: function_failed, protocol_error,
	// result_too_large, cancelled, aborted, or lost.
	Err *rpc.Error
	// Log holds the last lines of the function's log (at most
	// [LastLogLines]), the usual first clue to a failure.
	Log []string
}

// LastLogLines is how many of the last log lines a [CallError] keeps.
const LastLogLines = 10

// Error reads "node1:1811: call ID (fn): function_failed: ... (exit code 1)".
// The log lines are not part of it: they are often long, and a caller
// prints them on their own lines.
func (e *CallError) Error() string {
	return fmt.Sprintf("%s: call %s (%s): %v", e.Node, e.ID, e.FnName, e.Err)
}

// Unwrap returns the call's *rpc.Error.
func (e *CallError) Unwrap() error { return e.Err }

// describeTransport names a transport failure the way an operator reads
// it: "connection refused" rather than a dial error's full text.
func describeTransport(err error) string {
	var (
		errno    syscall.Errno
		noAnswer *noAnswerError
	)
	switch {
	case errors.As(err, &noAnswer):
		return noAnswer.Error()
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before an answer"
	}
	return strings.TrimPrefix(err.Error(), "fasthttp: ")
}

// roundDuration keeps durations in messages short: "21.3s", "350ms",
// "420µs".
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// noAnswerError is an attempt that got no whole answer before its
// deadline: none at all, or one that came too slowly. It records how long
// the attempt waited, which is the socket timeout unless the retry budget
// or the context cut it shorter.
type noAnswerError struct {
	after time.Duration
	err   error
}

// Error reads "no answer within 10s", or for a node that trickled, "no
// whole answer within 10s: it sent HTTP 200 and only 12 of its 900 body
// bytes".
func (e *noAnswerError) Error() string {
	var partial *partialAnswer
	if errors.As(e.err, &partial) {
		return fmt.Sprintf("no whole answer within %s: %v", roundDuration(e.after), partial)
	}
	return fmt.Sprintf("no answer within %s", roundDuration(e.after))
}

func (e *noAnswerError) Unwrap() error { return e.err }
