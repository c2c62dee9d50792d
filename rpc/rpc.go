// Package rpc is the wire format of noderpc, the one place that defines it.
//
// It holds the HTTP requests and answers between a master and noded, the
// call record, the call states, the error kinds with their HTTP statuses,
// the function-call ID, and the frames noded exchanges with a function
// process over its stdio. Every other package imports these types; none
// invents JSON of its own.
//
// All JSON goes through github.com/goccy/go-json, which decodes into the
// same struct tags as encoding/json but several times faster on the hot
// path of a call. Everything read from outside is first checked by
// UnmarshalStrict, which go-json alone is not (see strict.go).
package rpc

import (
	"errors"
	"math"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc/wire"
)

// ProtocolVersion is the version of the HTTP protocol and of the stdio
// frames; see wire.ProtocolVersion.
const ProtocolVersion = wire.ProtocolVersion

// Procedure paths served by noded.
const (
	PathStartFunction   = "/StartFunction"
	PathWaitForFunction = "/WaitForFunction"
	PathCancelFunction  = "/CancelFunction"
	PathReleaseFunction = "/ReleaseFunction"
	PathListFunctions   = "/ListFunctions"
	PathListCalls       = "/ListCalls"
	PathVersion         = "/Version"
)

// StartRequest is the body of PUT /StartFunction.
type StartRequest struct {
	// FnName names the backend function to run.
	FnName string `json:"fn_name"`
	// FnArgs is passed to the function unchanged; absent means null.
	FnArgs json.RawMessage `json:"fn_args,omitempty"`
	// Timeout is how many seconds the request may wait for the function
	// to finish before answering with a running record. 0 answers at once
	// (fire-and-forget).
	Timeout float64 `json:"timeout" unit:"seconds" required:"true"`
	// AbortAfter, when above 0, kills the function once it has run that
	// many seconds; the call then ends aborted.
	AbortAfter float64 `json:"abort_after,omitempty" unit:"seconds"`
	// RequestID makes a start idempotent: a repeated start with the same
	// RequestID answers the first call's record and starts nothing.
	RequestID string `json:"request_id,omitempty"`
	// LogOffset is the first log line the answer should carry.
	LogOffset int `json:"log_offset,omitempty"`
	// WakeOnLog makes the start also answer as soon as the function has
	// written a log line past LogOffset, as in WaitRequest, so that a
	// client shows the first lines live instead of after Timeout.
	WakeOnLog bool `json:"wake_on_log,omitempty"`
	// Release holds IDs of finished calls the client is done with. The
	// node releases them before it starts this call, each as a
	// ReleaseFunction would, so that a client calling a node again and
	// again sends one request per quick call instead of two. An ID the
	// node no longer holds is ignored; a call still running is kept.
	// The start itself is refused bad_request if Release holds more
	// than MaxRelease IDs or one that is not a call ID.
	Release []string `json:"release,omitempty"`
}

// MaxRelease bounds StartRequest.Release, so that one start cannot make
// noded spend long on releases before its own call.
const MaxRelease = 256

// Validate reports a bad_request error for a request no daemon could run.
func (r *StartRequest) Validate() error {
	if r.FnName == "" {
		return Errorf(KindBadRequest, "fn_name is required")
	}
	if err := checkSeconds("timeout", r.Timeout); err != nil {
		return err
	}
	if err := checkSeconds("abort_after", r.AbortAfter); err != nil {
		return err
	}
	if r.LogOffset < 0 {
		return Errorf(KindBadRequest, "log_offset must be >= 0, got %d", r.LogOffset)
	}
	if len(r.RequestID) > MaxRequestIDLen {
		return Errorf(KindBadRequest, "request_id is longer than %d bytes", MaxRequestIDLen)
	}
	if len(r.Release) > MaxRelease {
		return Errorf(KindBadRequest, "release holds %d IDs, more than %d", len(r.Release), MaxRelease)
	}
	for i, id := range r.Release {
		if _, err := ParseCallID(id); err != nil {
			var e *Error
			errors.As(err, &e) // ParseCallID's errors are all *Error
			return Errorf(KindBadRequest, "release[%d]: %s", i, e.Message)
		}
	}
	return nil
}

// MaxRequestIDLen bounds a request_id so a client cannot make noded hold
// arbitrarily large keys.
const MaxRequestIDLen = 256

// WaitRequest is the body of PUT /WaitForFunction.
type WaitRequest struct {
	// ID is the function-call ID returned by StartFunction.
	ID string `json:"id"`
	// Timeout is how many seconds to wait for the call to finish.
	Timeout float64 `json:"timeout" unit:"seconds"`
	// LogOffset is the first log line the answer should carry; pass the
	// log_offset of the previous answer to get only new lines.
	LogOffset int `json:"log_offset,omitempty"`
	// WakeOnLog makes the wait also end as soon as the function has
	// written log lines past LogOffset, so a client can show them live.
	WakeOnLog bool `json:"wake_on_log,omitempty"`
}

// Validate reports a bad_request error for a malformed wait.
func (r *WaitRequest) Validate() error {
	if r.ID == "" {
		return Errorf(KindBadRequest, "id is required")
	}
	if r.LogOffset < 0 {
		return Errorf(KindBadRequest, "log_offset must be >= 0, got %d", r.LogOffset)
	}
	return checkSeconds("timeout", r.Timeout)
}

// CancelRequest is the body of PUT /CancelFunction.
type CancelRequest struct {
	// ID is the function-call ID.
	ID string `json:"id"`
	// Timeout is how many seconds the request may wait for the function
	// process to end after its SIGTERM (capped at the daemon's cap).
	// Absent means DefaultCancelWait; 0 answers at once. The process is
	// SIGKILLed after the daemon's grace period whatever the timeout.
	Timeout *float64 `json:"timeout,omitempty" unit:"seconds"`
}

// DefaultCancelWait is how long a CancelFunction without a timeout waits
// for the function to end: most end on SIGTERM well within it.
const DefaultCancelWait = time.Second

// Validate reports a bad_request error for a malformed cancel.
func (r *CancelRequest) Validate() error {
	if r.ID == "" {
		return Errorf(KindBadRequest, "id is required")
	}
	if r.Timeout != nil {
		return checkSeconds("timeout", *r.Timeout)
	}
	return nil
}

// ReleaseResponse is the answer of PUT /ReleaseFunction.
type ReleaseResponse struct {
	ID       string `json:"id"`
	Released bool   `json:"released"`
}

// IDRequest is the body of PUT /ReleaseFunction.
type IDRequest struct {
	// ID is the function-call ID.
	ID string `json:"id"`
}

// Validate reports a bad_request error for a missing ID.
func (r *IDRequest) Validate() error {
	if r.ID == "" {
		return Errorf(KindBadRequest, "id is required")
	}
	return nil
}

func checkSeconds(field string, v float64) error {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return Errorf(KindBadRequest, "%s must be a number of seconds >= 0, got %v", field, v)
	}
	return nil
}

// Duration converts a number of seconds from the wire into a Duration,
// saturating instead of overflowing.
func Duration(seconds float64) time.Duration { return wire.Duration(seconds) }

// Seconds converts a Duration into the wire's number of seconds.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// Decode decodes a request body strictly (see UnmarshalStrict): malformed
// JSON, unknown fields, wrong types and trailing data are bad_request
// errors that say what was wrong and at which byte.
func Decode(body []byte, v any) error {
	if blank(body) {
		return Errorf(KindBadRequest, "empty request body, want a JSON object")
	}
	if err := UnmarshalStrict(body, v, RefuseUnknownFields); err != nil {
		return Errorf(KindBadRequest, "malformed request: %v", err)
	}
	return nil
}

// Version is the noderpc release, shown by every binary's --version and by
// GET /Version. It is wire.Version, which release builds set with
// -ldflags "-X github.com/noderpc/noderpc/rpc/wire.Version=v1.2.3".
var Version = wire.Version
