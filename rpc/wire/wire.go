// Package wire is the part of noderpc's wire format that a function
// process speaks: the error kinds and the Error object, the stdio frames
// between noded and a Go function process, the strict JSON decoder and
// Marshal. Package rpc, the rest of the wire format (the HTTP requests
// and answers, call records, call IDs, roles), re-exports every name
// defined here, and code outside a function process uses rpc.
//
// It is a package of its own so that a function process links and
// initialises almost nothing: rpc needs crypto/x509 for roles and net/url,
// whose initialisation and page faults every call's process would pay
// (about 0.7 ms a process here, half of a minimal Go process's start).
// It imports the standard library's plainer packages only (encoding/json,
// fmt, reflect, strconv, strings, sync, time, unicode/...): never net,
// net/url, crypto/x509, crypto/tls or go-json, which package rpc installs
// for the daemons (see Codec); keep it so (TestWireImportsLittle in
// package backend checks that the function binary links none of them).
package wire

import (
	"math"
	"time"
)

// ProtocolVersion is the version of the HTTP protocol and of the stdio
// frames. It changes only when an existing field or procedure changes
// meaning; adding one does not change it. Version 2: GET /ListFunctions
// lists the functions a node offers, where version 1 listed its calls,
// which are now GET /ListCalls.
const ProtocolVersion = 2

// Version is the noderpc release, shown by every binary's --version, by
// GET /Version and by the version function. Release builds set it with
// -ldflags "-X github.com/noderpc/noderpc/rpc/wire.Version=v1.2.3"; rpc.Version
// takes its value.
var Version = "0.1.0-dev"

// Duration converts a number of seconds from the wire into a Duration,
// saturating instead of overflowing. A positive number below a
// nanosecond is a nanosecond, not 0: 0 often means never or none (an
// abort_after of 0 aborts nothing), and the sender asked for a bound.
func Duration(seconds float64) time.Duration {
	if seconds <= 0 || math.IsNaN(seconds) {
		return 0
	}
	if seconds >= float64(math.MaxInt64)/float64(time.Second) {
		return time.Duration(math.MaxInt64)
	}
	return max(time.Duration(seconds*float64(time.Second)), time.Nanosecond)
}
