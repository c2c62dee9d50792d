package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The stdio protocol between noded and a Go function process:
//
//  1. noded starts the process with FunctionCookieKey=FunctionCookieValue
//     in its environment; without it the program is not a function process.
//  2. The process writes one Hello line to stdout, then blocks on stdin.
//  3. noded writes one FunctionRequest to stdin and closes it.
//  4. The process runs the function, writes one FunctionResult to stdout,
//     and exits 0 if the function succeeded, 1 if it failed.
//
// stdout carries nothing else; the function's log goes to stderr, one line
// per entry. Executable functions from the functions directory skip the
// frames: their stdin is the raw fn_args and their stdout the raw result.
//
// A process noded starts ahead of its call (the warm pool) also has
// FunctionWarmKey=1 in its environment: its request comes later, so it
// may run its request path once before its hello, where the first call
// of a process pays for every page of code and data it touches first.
const (
	FunctionCookieKey   = "NODERPC_FUNCTION_PROCESS"
	FunctionCookieValue = "b7c2d7e4a1f94b37a0b6c3f1d5e89a42"
	FunctionWarmKey     = "NODERPC_FUNCTION_WARM"
)

// Hello is the first line a function process writes: it proves the process
// speaks this protocol before noded hands it a request.
type Hello struct {
	Protocol int `json:"protocol"`
	PID      int `json:"pid"`
}

// FunctionRequest is what noded writes to a function process's stdin.
type FunctionRequest struct {
	CallID string          `json:"call_id"`
	FnName string          `json:"fn_name"`
	FnArgs json.RawMessage `json:"fn_args,omitempty"`
}

// AppendFunctionRequest appends the request frame for a call, with its
// newline, to dst. fnArgs, already checked to be one JSON value when the
// start was decoded, goes in as it is: re-encoding arguments of megabytes
// would cost noded several copies of them per call.
//
// A call ID and a function name are nearly always plain strings
// (printable ASCII without '"' or '\\'), which need no escaping: the frame
// is then written by hand, in the exact layout parseOwnRequest reads.
// The JSON encoder, with its large stack frame, made the new goroutine
// that feeds a cold call's process grow its stack (copying it twice),
// and cost noded 5% of its CPU per call.
func AppendFunctionRequest(dst []byte, callID, fnName string, fnArgs json.RawMessage) ([]byte, error) {
	if plainString(callID) && plainString(fnName) {
		dst = append(dst, `{"call_id":"`...)
		dst = append(dst, callID...)
		dst = append(dst, `","fn_name":"`...)
		dst = append(dst, fnName...)
		dst = append(dst, '"')
	} else {
		head, err := Marshal(FunctionRequest{CallID: callID, FnName: fnName})
		if err != nil {
			return dst, err
		}
		dst = append(dst, head[:len(head)-1]...) // without its closing brace
	}
	if len(fnArgs) > 0 {
		dst = append(dst, `,"fn_args":`...)
		dst = append(dst, fnArgs...)
	}
	return append(dst, '}', '\n'), nil
}

// plainString reports whether s can stand between JSON quotes as it is,
// and be read back by cutPlainString.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte(s[i]) {
			return false
		}
	}
	return true
}

// plainByte reports whether c may stand in a plain string: printable
// ASCII but '"' and '\'.
func plainByte(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
}

// FunctionResult is the last thing a function process writes to stdout:
// exactly one of Result and Error is set.
type FunctionResult struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// DecodeHello parses the hello line strictly (see UnmarshalStrict).
// Anything else is a protocol_error that quotes what the process wrote
// instead.
func DecodeHello(line []byte) (Hello, error) {
	var h Hello
	if err := UnmarshalStrict(line, &h, RefuseUnknownFields); err != nil || h.Protocol == 0 {
		why := "no protocol"
		if err != nil {
			why = err.Error()
		}
		return Hello{}, Errorf(KindProtocolError, "function process did not greet with the protocol hello, wrote %q: %s", clip(trimSpace(line), 120), why)
	}
	if h.Protocol != ProtocolVersion {
		return h, Errorf(KindProtocolError, "function process speaks protocol %d, noded speaks %d", h.Protocol, ProtocolVersion)
	}
	return h, nil
}

// DecodeFunctionRequest parses the request frame on a function process's
// stdin. It is strict in its syntax but ignores fields it does not know,
// so that noded may add some without a new protocol version. A frame
// that is not a request, or names no function, is a protocol_error.
func DecodeFunctionRequest(line []byte) (FunctionRequest, error) {
	if req, ok := parseOwnRequest(line); ok {
		return req, nil
	}
	var req FunctionRequest
	if blank(line) {
		return req, Errorf(KindProtocolError, "stdin closed without a request")
	}
	if err := UnmarshalStrict(line, &req, IgnoreUnknownFields); err != nil {
		return FunctionRequest{}, Errorf(KindProtocolError, "malformed request on stdin: %v", err)
	}
	if req.FnName == "" {
		return req, Errorf(KindProtocolError, "request on stdin has no fn_name")
	}
	return req, nil
}

// parseOwnRequest reads a request frame laid out exactly as
// AppendFunctionRequest writes it, {"call_id":"ID","fn_name":"NAME"} or
// {"call_id":"ID","fn_name":"NAME","fn_args":ARGS} and a newline, where ID
// and NAME are printable ASCII without '"' or '\', and ARGS is one strict
// JSON value (CheckJSON). It is the decoder of every call's process, in
// place of the strict one: the strict decoder walks FunctionRequest's
// type and encoding/json builds its decoder for it in every new process,
// and in an idle one runs code long gone from the CPU's caches, about
// 0.1 ms either way (doc/performance.md). Any other frame (an escape,
// another order, a field a newer noded added) is the strict decoder's:
// ok is false. The bytes of ARGS are line's.
func parseOwnRequest(line []byte) (req FunctionRequest, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"call_id":"`))
	if !ok {
		return req, false
	}
	id, rest, ok := cutPlainString(rest)
	if !ok {
		return req, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"fn_name":"`)); !ok {
		return req, false
	}
	name, rest, ok := cutPlainString(rest)
	if !ok || name == "" {
		return req, false
	}
	if rest, ok = bytes.CutSuffix(rest, []byte("}\n")); !ok {
		return req, false
	}
	var args []byte
	if len(rest) > 0 {
		if args, ok = bytes.CutPrefix(rest, []byte(`,"fn_args":`)); !ok || CheckJSON(args) != nil {
			return req, false
		}
		args = trimSpace(args) // as a json.RawMessage decodes
	}
	return FunctionRequest{CallID: id, FnName: name, FnArgs: args}, true
}

// cutPlainString returns the string before the first '"' of b and what
// follows that quote, if the string is plain (plainByte).
func cutPlainString(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		switch {
		case c == '"':
			return string(b[:i]), b[i+1:], true
		case !plainByte(c):
			return "", nil, false
		}
	}
	return "", nil, false
}

// DecodeFunctionResult parses, strictly, what a function process wrote to
// stdout after its hello. Garbage, several objects, unknown fields, or an
// object with neither or both of result and error are protocol errors.
func DecodeFunctionResult(out []byte) (FunctionResult, error) {
	var r FunctionResult
	if blank(out) {
		return r, Errorf(KindProtocolError, "function process exited without writing a result")
	}
	if err := UnmarshalStrict(out, &r, RefuseUnknownFields); err != nil {
		return FunctionResult{}, Errorf(KindProtocolError, "function process wrote a malformed result frame %q: %v", clip(trimSpace(out), 120), err)
	}
	if (r.Result == nil) == (r.Error == nil) {
		return r, Errorf(KindProtocolError, "function process result frame must hold exactly one of result and error")
	}
	if r.Error != nil && r.Error.Kind == "" {
		r.Error.Kind = KindFunctionFailed
	}
	return r, nil
}

// ValidResult reports whether raw is one complete JSON value, strict as
// UnmarshalStrict has it, as an executable function's stdout must be.
func ValidResult(raw []byte) error {
	if err := CheckJSON(raw); err != nil {
		return Errorf(KindProtocolError, "function wrote a result that is not valid JSON: %v: %q", err, clip(trimSpace(raw), 120))
	}
	return nil
}

// clip is ClipBytes of b, with b's length when it was cut: a function's
// output quoted in an error.
func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("%s (%d bytes)", ClipBytes(b, n), len(b))
}
