package wire

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kind classifies an error so callers can act on it without parsing text.
// Request kinds answer a request with a non-2xx status; call kinds describe
// how a finished call ended and travel inside a 200 call record.
type Kind string

// Request kinds: the request itself could not be served.
const (
	KindBadRequest      Kind = "bad_request"      // malformed JSON, wrong types, unknown fields, bad values
	KindUnknownFunction Kind = "unknown_function" // no function of that name
	KindUnknownCall     Kind = "unknown_call"     // no call of that ID (never issued, released, or expired)
	KindLost            Kind = "lost"             // the call belonged to an earlier daemon that is gone
	KindTooLarge        Kind = "too_large"        // request body over the daemon's limit
	KindBusy            Kind = "busy"             // the limit of running calls is reached; retry later
	KindShuttingDown    Kind = "shutting_down"    // the daemon is stopping and takes no new calls
	KindForbidden       Kind = "forbidden"        // the caller's role may not use this procedure
	KindTLSMismatch     Kind = "tls_mismatch"     // plain HTTP to a port serving TLS, or TLS to one serving plain HTTP
	KindUnknownSession  Kind = "unknown_session"  // masterd holds no such session (it lapsed, or masterd restarted): say hello again
	KindUnknownNode     Kind = "unknown_node"     // masterd knows no node of that name
	KindNotActive       Kind = "not_active"       // this masterd is a standby: the active master (if one is) is named in X-Active-Master
	KindInternal        Kind = "internal"         // a bug or an unexpected system failure
)

// Call kinds: how a finished call did not succeed.
const (
	KindFunctionFailed Kind = "function_failed"  // the function returned an error or exited non-zero
	KindProtocolError  Kind = "protocol_error"   // the function process broke the stdio protocol
	KindResultTooLarge Kind = "result_too_large" // the result was over the daemon's limit
	KindCancelled      Kind = "cancelled"        // CancelFunction or shutdown stopped it
	KindAborted        Kind = "aborted"          // it ran longer than its abort_after
)

// Client kinds: produced by the client, never sent by noded.
const (
	KindUnreachable Kind = "unreachable" // the node did not answer within the client's bound
	KindCertificate Kind = "certificate" // the TLS handshake failed: the node refused the client's certificate, or the client the node's
)

// Sentinels for errors.Is. A *Error matches the sentinel of its kind:
// errors.Is(err, rpc.ErrBusy) is true for any busy error.
var (
	ErrBadRequest      = &Error{Kind: KindBadRequest}
	ErrUnknownFunction = &Error{Kind: KindUnknownFunction}
	ErrUnknownCall     = &Error{Kind: KindUnknownCall}
	ErrLost            = &Error{Kind: KindLost}
	ErrTooLarge        = &Error{Kind: KindTooLarge}
	ErrBusy            = &Error{Kind: KindBusy}
	ErrShuttingDown    = &Error{Kind: KindShuttingDown}
	ErrForbidden       = &Error{Kind: KindForbidden}
	ErrTLSMismatch     = &Error{Kind: KindTLSMismatch}
	ErrUnknownSession  = &Error{Kind: KindUnknownSession}
	ErrUnknownNode     = &Error{Kind: KindUnknownNode}
	ErrNotActive       = &Error{Kind: KindNotActive}
	ErrInternal        = &Error{Kind: KindInternal}
	ErrFunctionFailed  = &Error{Kind: KindFunctionFailed}
	ErrProtocolError   = &Error{Kind: KindProtocolError}
	ErrResultTooLarge  = &Error{Kind: KindResultTooLarge}
	ErrCancelled       = &Error{Kind: KindCancelled}
	ErrAborted         = &Error{Kind: KindAborted}
	ErrUnreachable     = &Error{Kind: KindUnreachable}
	ErrCertificate     = &Error{Kind: KindCertificate}
)

// Error is the one error type of the wire: the "error" object of a failed
// request and of a call that did not succeed.
type Error struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
	// ExitCode is the function process's exit status, when it exited.
	ExitCode *int `json:"exit_code,omitempty"`
	// Signal names the signal that killed the function process, if one did.
	Signal string `json:"signal,omitempty"`
}

// Errorf returns an *Error of kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	msg := string(e.Kind)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.ExitCode != nil {
		msg += fmt.Sprintf(" (exit code %d)", *e.ExitCode)
	}
	if e.Signal != "" {
		msg += " (signal " + e.Signal + ")"
	}
	return msg
}

// Is reports whether target is an *Error of the same kind, so that every
// error matches the sentinel of its kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

// KindOf returns the kind of the first *Error in err's chain, or "" if
// there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// statusOfKind is the one table between request kinds and HTTP statuses,
// written as numbers: net/http, for its names, would cost every function
// process its package initialisation.
// KindFromStatus reads it backwards, first kind listed wins.
var statusOfKind = []struct {
	kind   Kind
	status int
}{
	{KindBadRequest, 400},
	{KindForbidden, 403},
	{KindTLSMismatch, 400},
	{KindUnknownFunction, 404},
	{KindUnknownCall, 404},
	{KindUnknownSession, 404},
	{KindUnknownNode, 404},
	{KindNotActive, 421},
	{KindLost, 410},
	{KindTooLarge, 413},
	{KindBusy, 503},
	{KindShuttingDown, 503},
	{KindInternal, 500},
}

// HTTPStatus returns the status noded answers an error of kind k with.
// Kinds that never answer a request map to 500.
func (k Kind) HTTPStatus() int {
	for _, e := range statusOfKind {
		if e.kind == k {
			return e.status
		}
	}
	return 500
}

// AnswersRequests reports whether k is a kind a daemon refuses a request
// with: one of the table of kinds and statuses, rather than a call's kind
// (which travels in a call record), a client's own, or a kind a newer
// daemon invented.
func (k Kind) AnswersRequests() bool {
	for _, e := range statusOfKind {
		if e.kind == k {
			return true
		}
	}
	return false
}

// EndsCalls reports whether k is a call kind: one a finished call's
// error carries in its record, rather than a request's refusal, a
// client's own, or a kind a newer daemon invented. noded gives a call
// no other kind, whatever its function process reported, so that a
// caller can take any other kind as "the call did not run" and, say,
// retry it (a busy refusal) without running a function twice.
func (k Kind) EndsCalls() bool {
	switch k {
	case KindFunctionFailed, KindProtocolError, KindResultTooLarge, KindCancelled, KindAborted:
		return true
	}
	return false
}

// KindFromStatus guesses the kind of a non-2xx answer whose body carried no
// error object (a proxy's answer, or one cut short).
func KindFromStatus(status int) Kind {
	if status == 429 {
		// fasthttp's own answer past --max-conns-per-ip: come back later.
		return KindBusy
	}
	for _, e := range statusOfKind {
		if e.status == status {
			return e.kind
		}
	}
	if status >= 500 {
		return KindInternal
	}
	return KindBadRequest
}

// Clip returns s if it has at most n bytes, and otherwise its first n
// bytes or fewer, cut at a character boundary, followed by "...": the
// form in which an error message or a log line quotes what it was given.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// ClipBytes is Clip of b, converting no more of b than it keeps.
func ClipBytes(b []byte, n int) string {
	if len(b) > n+utf8.UTFMax {
		b = b[:n+utf8.UTFMax]
	}
	return Clip(string(b), n)
}
