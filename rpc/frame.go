package rpc

import (
	"bytes"
	"fmt"
	"io"

	"github.com/goccy/go-json"
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
const (
	FunctionCookieKey   = "NODERPC_FUNCTION_PROCESS"
	FunctionCookieValue = "b7c2d7e4a1f94b37a0b6c3f1d5e89a42"
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
func AppendFunctionRequest(dst []byte, callID, fnName string, fnArgs json.RawMessage) ([]byte, error) {
	head, err := json.Marshal(FunctionRequest{CallID: callID, FnName: fnName})
	if err != nil {
		return dst, err
	}
	if len(fnArgs) == 0 {
		return append(append(dst, head...), '\n'), nil
	}
	dst = append(dst, head[:len(head)-1]...) // without its closing brace
	dst = append(dst, `,"fn_args":`...)
	dst = append(dst, fnArgs...)
	return append(dst, '}', '\n'), nil
}

// FunctionResult is the last thing a function process writes to stdout:
// exactly one of Result and Error is set.
type FunctionResult struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// DecodeHello parses the hello line. Anything else is a protocol_error
// that quotes what the process wrote instead.
func DecodeHello(line []byte) (Hello, error) {
	var h Hello
	if err := json.Unmarshal(line, &h); err != nil || h.Protocol == 0 {
		return h, Errorf(KindProtocolError, "function process did not greet with the protocol hello, wrote %q", clip(line, 120))
	}
	if h.Protocol != ProtocolVersion {
		return h, Errorf(KindProtocolError, "function process speaks protocol %d, noded speaks %d", h.Protocol, ProtocolVersion)
	}
	return h, nil
}

// DecodeFunctionResult parses what a function process wrote to stdout
// after its hello. Garbage, several objects, or an object with neither or
// both of result and error are protocol errors.
func DecodeFunctionResult(out []byte) (FunctionResult, error) {
	var r FunctionResult
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return r, Errorf(KindProtocolError, "function process exited without writing a result")
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, Errorf(KindProtocolError, "function process wrote a malformed result frame %q: %v", clip(out, 120), err)
	}
	// A second Decode must hit EOF: InputOffset is not exact after
	// escaped strings in go-json.
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return r, Errorf(KindProtocolError, "function process wrote data after its result frame")
	}
	// go-json copies the result, a json.RawMessage, without checking it;
	// found by FuzzDecodeFunctionResult.
	if !json.Valid(out) {
		return r, Errorf(KindProtocolError, "function process wrote a result frame that is not valid JSON: %q", clip(out, 120))
	}
	if (r.Result == nil) == (r.Error == nil) {
		return r, Errorf(KindProtocolError, "function process result frame must hold exactly one of result and error")
	}
	if r.Error != nil && r.Error.Kind == "" {
		r.Error.Kind = KindFunctionFailed
	}
	return r, nil
}

// ValidResult reports whether raw is one complete JSON value, as an
// executable function's stdout must be.
func ValidResult(raw []byte) error {
	if !json.Valid(raw) {
		return Errorf(KindProtocolError, "function wrote a result that is not valid JSON: %q", clip(bytes.TrimSpace(raw), 120))
	}
	return nil
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("%s... (%d bytes)", b[:n], len(b))
}
