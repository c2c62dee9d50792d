// Package backend is the kit for writing noderpc functions in Go: the Func
// type, the Registry a program fills, the builtins, and ServeFunction, the
// function-process side of the stdio protocol between noded and a call's
// child process.
//
// A Go function is a Func registered by name in a Registry and compiled
// into the noded binary. It runs in a process of its own, one per call,
// so that a function that hangs, crashes or leaks memory takes only its
// own call down and noded can always cancel it by killing the process.
//
// That process is a copy of noded itself: noded re-executes its own
// binary with the function cookie (wire.FunctionCookieKey) in the
// environment, and the binary's main hands control to ServeFunction
// (IsFunctionProcess tells it to) before doing anything else.
// ServeFunction greets noded with wire.Hello, reads one wire.FunctionRequest
// from stdin, runs the function and writes one wire.FunctionResult to
// stdout. The function logs through Logger, whose records go to stderr,
// where noded collects them as the call's log.
//
// How noded finds a function by name, Go or executable, and starts its
// process is noded's own business (package noded/functions);
// RegisterBuiltins adds echo, sleep, version and node_info.
package backend

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
)

// Func is a backend function. args is the call's fn_args exactly as the
// client sent them (nil when absent); the function decodes them itself so
// that it alone decides what it accepts. The returned value is encoded as
// the call's JSON result. An error fails the call with kind
// function_failed, or with the kind of an *wire.Error it returns if that
// is a call kind (wire.Kind.EndsCalls); noded makes any other kind
// function_failed.
//
// ctx is cancelled when noded cancels the call (CancelFunction, abort_after
// or shutdown all arrive as SIGTERM); a function that runs for long must
// watch it, because noded kills the process after its grace period anyway.
// The process asks for SIGTERM only once the function first calls
// ctx.Done or ctx.Err (directly or through anything it hands ctx to):
// until then SIGTERM ends the process at once and deferred calls do not
// run, so a function with cleanup to do takes ctx.Done() before its work.
type Func func(ctx context.Context, args json.RawMessage) (any, error)

type loggerKey struct{}

// Logger returns the logger a function logs with. Its records go to the
// function process's stderr, one line per record, each with the call_id
// attribute; noded collects them as the call's log. Outside a function
// process (in a unit test of a Func, say) it returns slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	switch l := ctx.Value(loggerKey{}).(type) {
	case *slog.Logger:
		return l
	case *lazyLogger:
		return l.get()
	}
	return slog.Default()
}

// lazyLogger is a call's logger, made the first time the function asks
// for it: a function that never logs, echo among them, never runs
// log/slog's handler code. Making the logger up front (its handler, and
// the call_id attribute formatted ahead) cost every cold call's process
// its first touch of that code, about 2% of the process's CPU
// (doc/performance.md).
type lazyLogger struct {
	once sync.Once
	new  func() *slog.Logger
	l    *slog.Logger
}

func (l *lazyLogger) get() *slog.Logger {
	l.once.Do(func() { l.l = l.new() })
	return l.l
}

// WithLogger returns a context whose Logger is l, so a Func can be tested
// with its log captured.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}
