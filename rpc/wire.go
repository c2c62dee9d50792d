package rpc

import (
	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc/wire"
)

// go-json is the JSON library of every daemon and client: it decodes and
// encodes several times faster than encoding/json on the path of each
// request. Package wire, which function processes link without rpc, uses
// encoding/json unless told otherwise; rpc tells it here, so every program
// that speaks HTTP to or as noded uses go-json throughout.
func init() {
	wire.SetCodec(wire.Codec{
		Marshal: func(v any) ([]byte, error) {
			return json.MarshalWithOption(v, json.DisableHTMLEscape())
		},
		Unmarshal:       json.Unmarshal,
		ContextDecoders: true,
	})
}

// The names below are package wire's, the part of the wire format that a
// function process speaks, re-exported so that rpc stays the one package
// the rest of the code imports for the wire format. See package wire for
// why it is separate.

// Kind classifies an error so callers can act on it without parsing text.
type Kind = wire.Kind

// Error is the one error type of the wire: the "error" object of a failed
// request and of a call that did not succeed.
type Error = wire.Error

// The error kinds; see package wire for what each means.
const (
	KindBadRequest      = wire.KindBadRequest
	KindUnknownFunction = wire.KindUnknownFunction
	KindUnknownCall     = wire.KindUnknownCall
	KindLost            = wire.KindLost
	KindTooLarge        = wire.KindTooLarge
	KindBusy            = wire.KindBusy
	KindShuttingDown    = wire.KindShuttingDown
	KindForbidden       = wire.KindForbidden
	KindTLSMismatch     = wire.KindTLSMismatch
	KindUnknownSession  = wire.KindUnknownSession
	KindUnknownNode     = wire.KindUnknownNode
	KindNotActive       = wire.KindNotActive
	KindInternal        = wire.KindInternal
	KindFunctionFailed  = wire.KindFunctionFailed
	KindProtocolError   = wire.KindProtocolError
	KindResultTooLarge  = wire.KindResultTooLarge
	KindCancelled       = wire.KindCancelled
	KindAborted         = wire.KindAborted
	KindUnreachable     = wire.KindUnreachable
	KindCertificate     = wire.KindCertificate
)

// Sentinels for errors.Is, the same values as package wire's: a *Error
// matches the sentinel of its kind.
var (
	ErrBadRequest      = wire.ErrBadRequest
	ErrUnknownFunction = wire.ErrUnknownFunction
	ErrUnknownCall     = wire.ErrUnknownCall
	ErrLost            = wire.ErrLost
	ErrTooLarge        = wire.ErrTooLarge
	ErrBusy            = wire.ErrBusy
	ErrShuttingDown    = wire.ErrShuttingDown
	ErrForbidden       = wire.ErrForbidden
	ErrTLSMismatch     = wire.ErrTLSMismatch
	ErrUnknownSession  = wire.ErrUnknownSession
	ErrUnknownNode     = wire.ErrUnknownNode
	ErrNotActive       = wire.ErrNotActive
	ErrInternal        = wire.ErrInternal
	ErrFunctionFailed  = wire.ErrFunctionFailed
	ErrProtocolError   = wire.ErrProtocolError
	ErrResultTooLarge  = wire.ErrResultTooLarge
	ErrCancelled       = wire.ErrCancelled
	ErrAborted         = wire.ErrAborted
	ErrUnreachable     = wire.ErrUnreachable
	ErrCertificate     = wire.ErrCertificate
)

// Errorf returns an *Error of kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return wire.Errorf(kind, format, args...)
}

// KindOf returns the kind of the first *Error in err's chain, or "" if
// there is none.
func KindOf(err error) Kind { return wire.KindOf(err) }

// KindFromStatus guesses the kind of a non-2xx answer whose body carried no
// error object (a proxy's answer, or one cut short).
func KindFromStatus(status int) Kind { return wire.KindFromStatus(status) }

// The stdio protocol between noded and a Go function process (see
// package wire).
const (
	FunctionCookieKey   = wire.FunctionCookieKey
	FunctionCookieValue = wire.FunctionCookieValue
	FunctionWarmKey     = wire.FunctionWarmKey
)

type (
	// Hello is the first line a function process writes.
	Hello = wire.Hello
	// FunctionRequest is what noded writes to a function process's stdin.
	FunctionRequest = wire.FunctionRequest
	// FunctionResult is the last thing a function process writes to stdout.
	FunctionResult = wire.FunctionResult
)

// AppendFunctionRequest appends the request frame for a call, with its
// newline, to dst; fnArgs goes in as it is.
func AppendFunctionRequest(dst []byte, callID, fnName string, fnArgs json.RawMessage) ([]byte, error) {
	return wire.AppendFunctionRequest(dst, callID, fnName, fnArgs)
}

// DecodeHello parses a function process's hello line strictly.
func DecodeHello(line []byte) (Hello, error) { return wire.DecodeHello(line) }

// DecodeFunctionRequest parses the request frame on a function process's
// stdin.
func DecodeFunctionRequest(line []byte) (FunctionRequest, error) {
	return wire.DecodeFunctionRequest(line)
}

// DecodeFunctionResult parses, strictly, what a function process wrote to
// stdout after its hello.
func DecodeFunctionResult(out []byte) (FunctionResult, error) {
	return wire.DecodeFunctionResult(out)
}

// ValidResult reports whether raw is one complete strict JSON value, as an
// executable function's stdout must be.
func ValidResult(raw []byte) error { return wire.ValidResult(raw) }

// The strict JSON decoder (see package wire).
type (
	// UnknownFields says what a strict decode does with an unknown key.
	UnknownFields = wire.UnknownFields
	// JSONError says why a strict decode refused its input, and where.
	JSONError = wire.JSONError
)

// What a strict decode does with an unknown key.
const (
	RefuseUnknownFields = wire.RefuseUnknownFields
	IgnoreUnknownFields = wire.IgnoreUnknownFields
)

// UnmarshalStrict decodes data, one strict JSON value, into v, a non-nil
// pointer; the error, if any, is a *JSONError.
func UnmarshalStrict(data []byte, v any, unknown UnknownFields) error {
	return wire.UnmarshalStrict(data, v, unknown)
}

// CheckJSON checks that data is one strict JSON value of any shape.
func CheckJSON(data []byte) error { return wire.CheckJSON(data) }

// Marshal encodes v as the wire carries it: like json.Marshal, but with
// '<', '>' and '&' as themselves.
func Marshal(v any) ([]byte, error) { return wire.Marshal(v) }

// blank reports whether data holds nothing but JSON whitespace.
func blank(data []byte) bool {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// Clip returns s cut to at most n bytes at a character boundary, marked
// "...", as an error message or a log line quotes what it was given.
func Clip(s string, n int) string { return wire.Clip(s, n) }

// ClipBytes is Clip of b, converting no more of b than it keeps.
func ClipBytes(b []byte, n int) string { return wire.ClipBytes(b, n) }
