package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"

	"github.com/noderpc/noderpc/rpc/wire"
)

// MaxRequestSize bounds the wire.FunctionRequest a function process reads
// from stdin. noded refuses StartFunction bodies over its --max-request
// (64 MiB by default), so a larger frame means a broken parent, and the
// bound keeps a broken parent from making the child read forever.
const MaxRequestSize = 64<<20 + 64<<10

// Exit codes of a function process. noded reads the call's outcome from
// the result frame; the exit code tells the same story for a process that
// could not write one, and for operators reading ps or a core dump.
const (
	ExitSucceeded = 0 // the function returned a result
	ExitFailed    = 1 // the function returned an error, panicked or was cancelled
	ExitProtocol  = 2 // no cookie, an unreadable request, or stdout broke
)

// IsFunctionProcess reports whether this process was started by noded to
// run a function: its environment holds the function cookie. A noded main
// asks this first, before parsing flags, because a function process's
// arguments are not noded's.
func IsFunctionProcess() bool {
	return os.Getenv(wire.FunctionCookieKey) == wire.FunctionCookieValue
}

// ServeFunction runs the function-process side of the stdio protocol
// documented in rpc/frame.go and returns the process's exit code:
// ExitSucceeded, ExitFailed, or ExitProtocol. A noded main calls
//
//	if backend.IsFunctionProcess() {
//		os.Exit(backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr))
//	}
//
// Without the cookie it explains on stderr that the program is started by
// noded and returns ExitProtocol, so an operator who runs the binary by
// hand learns why nothing happens.
//
// SIGTERM and SIGINT cancel the function's context instead of killing the
// process, once the function has looked at its context (see
// signalContext), so the function can clean up and the call still ends
// with a result frame that says it was cancelled. Until then, and while
// the process waits for its request, they end it as they end any program.
//
// When stdout is os.Stdout, ServeFunction moves the protocol to a private
// copy of file descriptor 1 and points descriptor 1 (and os.Stdout) at
// stderr: a function that prints, or a child process it starts, then adds
// to the call's log instead of corrupting the result frame, and a
// grandchild that outlives the function does not hold noded's pipe open.
func ServeFunction(r *Registry, stdin io.Reader, stdout, stderr io.Writer) int {
	if !IsFunctionProcess() {
		fmt.Fprintf(stderr, "%s: this is a noderpc function process: noded starts it with %s set in the environment, "+
			"writes one request to its stdin and reads the result from its stdout. Run noded instead, "+
			"and call functions through its StartFunction procedure.\n", os.Args[0], wire.FunctionCookieKey)
		return ExitProtocol
	}
	endLog := func() {}
	if f, ok := stdout.(*os.File); ok && f == os.Stdout {
		out, err := reserveStdout(stderr)
		if err != nil {
			fmt.Fprintf(stderr, "noderpc function process: %v\n", err)
			return ExitProtocol
		}
		defer out.Close()
		stdout = out
		if endLog, err = logCloser(); err != nil {
			fmt.Fprintf(stderr, "noderpc function process: %v\n", err)
			return ExitProtocol
		}
	}
	if os.Getenv(wire.FunctionWarmKey) == "1" {
		primeCall()
	}
	return serve(newSignalContext(), r, stdin, stdout, stderr, endLog)
}

// signalContext is a function's context: SIGTERM or SIGINT cancels it.
// It asks for the signals only when it is first asked whether it is done
// (Done or Err, as a select on it, every context derived from it and
// every library that takes it do), not at the process's start: os/signal's
// watcher costs every process two more threads and about 0.4 ms of its
// start, a sixth of a cold call's (doc/performance.md). Until then the
// signals keep their default action and end the process, as they end any
// program: a process still waiting for its request has nothing to say,
// and a function that never looks at its context could not have stopped
// early anyway. noded's verdict is the same either way: a call it stops
// is cancelled, whatever its process did (jobs.Table.decide).
type signalContext struct {
	context.Context // cancelled, with the signal as its cause, by watch
	cancel          context.CancelCauseFunc
	once            sync.Once
}

func newSignalContext() *signalContext {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &signalContext{Context: ctx, cancel: cancel}
}

// Done implements context.Context, starting to watch for the signals.
func (c *signalContext) Done() <-chan struct{} {
	c.once.Do(c.watch)
	return c.Context.Done()
}

// Err implements context.Context, starting to watch for the signals.
func (c *signalContext) Err() error {
	c.once.Do(c.watch)
	return c.Context.Err()
}

// watch turns SIGTERM and SIGINT into the context's cancellation for the
// rest of the process's life.
func (c *signalContext) watch() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sig
		c.cancel(fmt.Errorf("%v signal received", s))
	}()
}

// logCloser returns a func that ends the call's log: it points
// descriptors 1 and 2 at /dev/null, so that noded sees the log pipe close
// just before the result frame and can answer the call without waiting
// for this process to exit (an exit costs about a millisecond). /dev/null
// is opened now, before the hello, to keep the open off the call's path.
//
// It opens /dev/null with a bare open(2): an *os.File would register it
// with the runtime's poller, whose set-up (epoll, an eventfd) costs a
// process that needs no poller about 0.1 ms.
func logCloser() (func(), error) {
	null, err := syscall.Open(os.DevNull, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	return func() {
		dupTo(null, 1)
		dupTo(null, 2)
		syscall.Close(null)
	}, nil
}

// primeRequest is the request primeCall reads: as noded writes one.
var primeRequest = []byte(`{"call_id":"1:2:1764547200.000001:0123456789abcdef","fn_name":"echo","fn_args":{"a":[1,"b"]}}` + "\n")

// primeCall runs a call's own path once, on a dummy request and into
// io.Discard, in a process noded started ahead of its call (a warm one,
// FunctionWarmKey): reading and decoding the request, the call's logger
// and a line of it (which loads the local time zone), the result's
// encoding and its frame, and the JSON library's encoder on a struct,
// which a result that is not a json.RawMessage goes through. A process
// pays for each page of code and data it touches first with a page
// fault, and in an idle process for caches long cold: an idle process
// answered echo 0.28-0.34 ms after its request unprimed, with 5 page
// faults after its hello, and 0.22-0.25 ms primed, with at most 1, as
// the minimal Go program (0.16-0.20 ms; doc/performance.md). A cold
// process would pay the same twice, so it primes nothing; nor is the
// function run, whose effects are its own.
func primeCall() {
	req, err := readRequest(bytes.NewReader(primeRequest), MaxRequestSize)
	if err != nil {
		return
	}
	callLogger(io.Discard, req.CallID).Info("primed", "fn", req.FnName)
	res, err := encodeResult(req.FnArgs)
	if err != nil {
		return
	}
	writeFrame(io.Discard, wire.FunctionResult{Result: res})
	wire.Marshal(req)
}

// reserveStdout returns a private descriptor for the protocol and points
// descriptor 1, and so os.Stdout, at stderr.
//
// os.Stdout stays the *os.File of descriptor 1: were it replaced, the old
// one would be garbage, and its finalizer would close descriptor 1 at
// some collection, so that the next descriptor opened (the runtime
// poller's epoll, say) would be 1 and the log's end, which points 1 at
// /dev/null, would silently replace it.
func reserveStdout(stderr io.Writer) (*os.File, error) {
	fd, err := dupCloexec(1)
	if err != nil {
		return nil, fmt.Errorf("keeping stdout for the protocol: %w", err)
	}
	errFile, ok := stderr.(*os.File)
	if !ok {
		errFile = os.Stderr
	}
	if err := dupTo(int(errFile.Fd()), 1); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("pointing stdout at stderr: %w", err)
	}
	return os.NewFile(uintptr(fd), "protocol"), nil
}

// serve is ServeFunction after the cookie check, with the cancellation
// context supplied so tests can cancel without signals.
//
// endLog is called after the function's last log line and before its
// result frame.
func serve(ctx context.Context, r *Registry, stdin io.Reader, stdout, stderr io.Writer, endLog func()) int {
	stderr = &lockedWriter{w: stderr}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "noderpc function process: "+format+"\n", args...)
		return ExitProtocol
	}
	if err := writeFrame(stdout, wire.Hello{Protocol: wire.ProtocolVersion, PID: os.Getpid()}); err != nil {
		return fail("writing hello: %v", err)
	}

	req, err := readRequest(stdin, MaxRequestSize)
	if err != nil {
		var rerr *wire.Error
		if !errors.As(err, &rerr) {
			rerr = wire.Errorf(wire.KindProtocolError, "%v", err)
		}
		writeFrame(stdout, wire.FunctionResult{Error: rerr}) // best effort: noded may be gone
		return fail("%v", rerr.Message)
	}

	log := &lazyLogger{new: func() *slog.Logger { return callLogger(stderr, req.CallID) }}
	res := call(context.WithValue(ctx, loggerKey{}, log), r, req, stderr)
	endLog()
	if err := writeFrame(stdout, res); err != nil {
		return fail("writing result: %v", err)
	}
	if res.Error != nil {
		return ExitFailed
	}
	return ExitSucceeded
}

// readRequest reads the one request frame. It reads in the calling
// goroutine, with nothing else running: a SIGTERM meanwhile ends the
// process (see signalContext).
func readRequest(stdin io.Reader, limit int) (wire.FunctionRequest, error) {
	// noded closes stdin after the request, so EOF ends the frame; the
	// limit keeps a broken parent from filling our memory.
	b, err := io.ReadAll(io.LimitReader(stdin, int64(limit)+1))
	switch {
	case err != nil:
		return wire.FunctionRequest{}, wire.Errorf(wire.KindProtocolError, "reading the request from stdin: %v", err)
	case len(b) > limit:
		return wire.FunctionRequest{}, wire.Errorf(wire.KindProtocolError, "request on stdin is larger than %d bytes", limit)
	}
	// Unknown fields are ignored: a newer noded may add some without
	// changing wire.ProtocolVersion.
	return wire.DecodeFunctionRequest(b)
}

// callLogger is the logger a call's function gets: text lines on w,
// each with the call's ID.
func callLogger(w io.Writer, callID string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("call_id", callID)
}

// call runs the requested function and turns whatever it does (return,
// fail, panic) into the result frame.
func call(ctx context.Context, r *Registry, req wire.FunctionRequest, stderr io.Writer) (res wire.FunctionResult) {
	fn, ok := r.Lookup(req.FnName)
	if !ok {
		return wire.FunctionResult{Error: wire.Errorf(wire.KindUnknownFunction,
			"no Go function %q in this program (it has %v)", req.FnName, r.Names())}
	}
	defer func() {
		if v := recover(); v != nil {
			Logger(ctx).Error("function panicked", "panic", fmt.Sprint(v))
			// The stack goes out raw, one log line per stack line, because
			// that is how people read stacks.
			fmt.Fprintf(stderr, "panic: %v\n\n%s", v, debug.Stack())
			res = wire.FunctionResult{Error: wire.Errorf(wire.KindFunctionFailed, "function %s panicked: %v", req.FnName, v)}
		}
	}()
	v, err := fn(ctx, req.FnArgs)
	if err != nil {
		return wire.FunctionResult{Error: resultError(ctx, err)}
	}
	b, err := encodeResult(v)
	if err != nil {
		Logger(ctx).Error("cannot encode the result", "err", err)
		return wire.FunctionResult{Error: wire.Errorf(wire.KindFunctionFailed, "function %s returned a result that cannot be encoded as JSON: %v", req.FnName, err)}
	}
	return wire.FunctionResult{Result: b}
}

// encodeResult encodes a function's result as wire.Marshal does, and
// checks it. A json.RawMessage, the result of echo and of any function
// that passes JSON through, is checked and compacted as the JSON library
// would compact it, without the library: building an encoder in a new
// process cost a cold call's function process about 2% of its CPU, and
// json.Compact's scanner, code the process touches nowhere else, about
// as much as its first touch of log/slog (see lazyLogger).
func encodeResult(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok && raw != nil {
		if err := wire.CheckJSON(raw); err != nil {
			return nil, err
		}
		return compact(raw), nil
	}
	b, err := wire.Marshal(v)
	if err != nil {
		return nil, err
	}
	// The JSON library may copy the bytes of a json.RawMessage or a
	// MarshalJSON with their escapes or UTF-8 unchecked (go-json, in
	// noded's own binary, checks neither; encoding/json lets invalid
	// UTF-8 through): noded would refuse the whole frame as the
	// process's protocol error.
	return b, wire.CheckJSON(b)
}

// compact returns data, valid JSON, without the whitespace between its
// tokens, as json.Compact writes it: data itself when it has none, as
// fn_args encoded by a JSON library (the master's client's) have none.
func compact(data []byte) []byte {
	var out []byte // nil until the first whitespace to drop
	inString, escaped := false, false
	for i, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if out == nil {
				out = make([]byte, i, len(data))
				copy(out, data)
			}
			continue
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		return data
	}
	return out
}

// resultError chooses the wire error for a function's error: the function's
// own *wire.Error if it returned one, cancelled if it gave up because its
// context was cancelled, function_failed otherwise.
func resultError(ctx context.Context, err error) *wire.Error {
	var rerr *wire.Error
	if errors.As(err, &rerr) {
		out := *rerr
		if out.Kind == "" {
			out.Kind = wire.KindFunctionFailed
		}
		if out.Message == "" {
			out.Message = err.Error()
		}
		return &out
	}
	// Cause, not Err, asks whether ctx is done: Err would start watching
	// for signals (see signalContext) in a process about to exit.
	if context.Cause(ctx) != nil && errors.Is(err, ctx.Err()) {
		return wire.Errorf(wire.KindCancelled, "%v (%v)", err, context.Cause(ctx))
	}
	return wire.Errorf(wire.KindFunctionFailed, "%v", err)
}

// writeFrame writes v as one line of JSON. The hello and a successful
// result, the frames of every call, are written by hand: their bytes are
// what wire.Marshal writes (a result is already compact JSON, from
// wire.Marshal), without the JSON library's reflection over their types
// and the building of their encoders in every new process.
func writeFrame(w io.Writer, v any) error {
	var b []byte
	switch f := v.(type) {
	case wire.Hello:
		b = append(b, `{"protocol":`...)
		b = strconv.AppendInt(b, int64(f.Protocol), 10)
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(f.PID), 10)
		b = append(b, '}')
	case wire.FunctionResult:
		if f.Error != nil || f.Result == nil {
			return marshalFrame(w, v)
		}
		b = make([]byte, 0, len(f.Result)+len(`{"result":}`)+1)
		b = append(append(append(b, `{"result":`...), f.Result...), '}')
	default:
		return marshalFrame(w, v)
	}
	_, err := w.Write(append(b, '\n'))
	return err
}

// marshalFrame writes v, encoded by wire.Marshal, as one line.
func marshalFrame(w io.Writer, v any) error {
	b, err := encodeResult(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// lockedWriter serialises writes so that log records from a function's
// goroutines and the panic stack never interleave within a line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
