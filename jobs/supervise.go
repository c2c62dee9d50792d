package jobs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/goccy/go-json"
	"golang.org/x/sys/unix"

	"github.com/noderpc/noderpc/rpc"
)

// drainAfterExit is how long the pipes are read after the function process
// exited and its group was killed. Only a descendant that left the group
// (setsid) can still hold them open; it must not hold the call hostage.
const drainAfterExit = 2 * time.Second

// output is what the stdout reader made of the function's stdout.
type output struct {
	data     []byte
	tooLarge bool
	err      *rpc.Error // a protocol error: bad hello, unwritable request
}

// exit is how a reaped function process ended.
type exit struct {
	code   *int   // nil when a signal killed it or the status is unknown
	signal string // the signal that killed it, if one did
}

// verdict is how a call ended: its terminal state, and its result or error.
type verdict struct {
	state  rpc.State
	result json.RawMessage
	err    *rpc.Error
}

// supervise owns c's process from spawn to reap: it feeds the request,
// collects stdout and stderr concurrently, reaps the process, kills what
// is left of it, and moves the call to its terminal state.
//
// A Go function process that succeeded ends its log (stderr) before it
// writes its result frame. Once both are in, nothing the process does
// can change the outcome, so the call finishes then, and the exit and
// reap (about a millisecond for a Go process) happen after the answer.
//
// args are the call's fn_args: the supervisor hands them to the process,
// unless fed says launch did, and keeps no copy, so a finished call holds
// only its result.
func (t *Table) supervise(c *call, args json.RawMessage, fed *fedRequest) {
	defer t.supervisors.Done()
	defer close(c.reaped)
	p := c.proc
	// A warm process launch did not feed (its request is large) gets
	// it first, before the goroutines below are started, so that the
	// process works while they start instead of after.
	if fed == nil && p.greeted {
		fed = &fedRequest{err: p.proto.send(c, args)}
	}

	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		t.readLog(c, p.stderr)
	}()
	early := make(chan []byte, 1) // a result that may settle the call before the exit
	outDone := make(chan output, 1)
	go func() { outDone <- t.readOutput(c, args, fed, early) }()
	exited := make(chan error, 1)
	go func() { exited <- p.wait() }()

	var (
		waitErr  error
		frame    []byte // the early result, while the log is still open
		logEnded = logDone
		done     bool
	)
	for wait := true; wait; {
		select {
		case frame = <-early:
			early = nil
		case <-logEnded:
			logEnded = nil
		case waitErr = <-exited:
			wait = false
		}
		if frame != nil && logEnded == nil && !done {
			if v, settled := t.decide(c, output{data: frame}, nil); settled {
				t.complete(c, v)
				done = true
			}
			frame = nil
		}
	}
	// Whatever the function left behind dies with it.
	p.killLeftovers()
	deadline := time.Now().Add(drainAfterExit)
	p.stdout.SetReadDeadline(deadline)
	p.stderr.SetReadDeadline(deadline)
	out := <-outDone
	<-logDone
	p.stdout.Close()
	p.stderr.Close()

	if !done {
		v, _ := t.decide(c, out, exitOf(p, waitErr))
		t.complete(c, v)
	}
	if err := p.release(); err != nil {
		t.cfg.Logger.Warn("removing the call's cgroup", "call_id", c.id, "err", err)
	}
}

// decide decides how c ended from what was asked of it, what its process
// wrote, and how the process exited. A requested stop wins over
// everything else: a cancelled call is cancelled even if it wrote a
// result late.
//
// It is asked twice at most. At the result frame, before the exit (ended
// is nil), only a success settles the call: nothing the process does
// afterwards can change it. Any other outcome waits for the exit, whose
// status its error carries and which a stop may still overtake. After
// the reap every outcome is settled.
func (t *Table) decide(c *call, out output, ended *exit) (v verdict, settled bool) {
	failed := ended != nil && (ended.code == nil || *ended.code != 0)
	stop, reason := c.stopRequest()
	var (
		result          json.RawMessage
		fnErr, protoErr *rpc.Error
	)
	if stop == "" && !out.tooLarge && out.err == nil {
		result, fnErr, protoErr = c.proc.proto.decode(out.data)
	}
	switch {
	case stop == rpc.KindAborted:
		v = verdict{state: rpc.StateAborted, err: &rpc.Error{Kind: stop, Message: reason}}
	case stop != "":
		v = verdict{state: rpc.StateCancelled, err: &rpc.Error{Kind: stop, Message: reason}}
	case out.tooLarge:
		v = verdict{state: rpc.StateFailed, err: t.tooLarge()}
	case out.err != nil:
		v = verdict{state: rpc.StateFailed, err: out.err}
	case protoErr != nil && failed:
		// Torn output of a process that died: its exit says why.
		v = verdict{state: rpc.StateFailed, err: t.failure(c, ended)}
	case protoErr != nil:
		v = verdict{state: rpc.StateFailed, err: protoErr}
	case fnErr != nil:
		v = verdict{state: rpc.StateFailed, err: functionError(fnErr)}
	case int64(len(result)) > t.cfg.MaxResult:
		v = verdict{state: rpc.StateFailed, err: t.tooLarge()}
	case failed:
		v = verdict{state: rpc.StateFailed, err: t.failure(c, ended)}
	default:
		v = verdict{state: rpc.StateSucceeded, result: result}
	}
	if ended == nil {
		return v, v.state == rpc.StateSucceeded
	}
	if v.err != nil {
		v.err.ExitCode, v.err.Signal = ended.code, ended.signal
	}
	return v, true
}

// functionError is the call's error for the error frame its process
// wrote. A function chooses its error's kind among the call kinds
// (rpc.Kind.EndsCalls); any other, a request's refusal such as busy, a
// client's own or an invented one, would tell a caller that the call
// never ran, and one that retried it would run the function twice. Such
// an error becomes function_failed, its message naming the kind the
// process reported.
func functionError(e *rpc.Error) *rpc.Error {
	if e.Kind.EndsCalls() {
		return e
	}
	out := *e
	out.Kind = rpc.KindFunctionFailed
	out.Message = fmt.Sprintf("function reported error kind %q: %s", rpc.Clip(string(e.Kind), 64), e.Message)
	return &out
}

// complete moves c to its terminal state, frees its slot and logs its end.
func (t *Table) complete(c *call, v verdict) {
	state, cerr := v.state, v.err
	now := t.cfg.Now()
	// The slot is free before anyone learns the call ended, so a client
	// that starts its next call on the answer is never refused busy.
	t.mu.Lock()
	t.running--
	t.mu.Unlock()
	if err := c.finish(state, v.result, cerr, now); err != nil {
		// Unreachable unless the state machine has a bug: say so loudly.
		t.cfg.Logger.Error("finishing call", "call_id", c.id, "err", err)
	}
	t.cfg.Observer.CallFinished(c.fnName, state, kindOf(cerr), now.Sub(c.started))
	attrs := []any{"call_id", c.id, "fn", c.fnName, "state", state, "duration", now.Sub(c.started)}
	if cerr != nil {
		attrs = append(attrs, "error_kind", cerr.Kind)
		if cerr.ExitCode != nil {
			attrs = append(attrs, "exit_code", *cerr.ExitCode)
		}
		if cerr.Signal != "" {
			attrs = append(attrs, "signal", cerr.Signal)
		}
	}
	t.cfg.Logger.Info("call finished", attrs...)
}

// fedRequest is the outcome of feeding a call's request to its process
// (nil error: fed).
type fedRequest struct{ err *rpc.Error }

// readOutput checks the process's hello, hands it the request unless fed
// says it was handed already (ahead of the hello), and reads its output
// through the result limit, in the protocol the process speaks.
func (t *Table) readOutput(c *call, args json.RawMessage, fed *fedRequest, early chan<- []byte) output {
	p := c.proc
	if fed != nil && fed.err != nil {
		return output{err: fed.err}
	}
	if err := p.proto.greet(p); err != nil {
		return output{err: err}
	}
	if fed == nil {
		if err := p.proto.send(c, args); err != nil {
			return output{err: err}
		}
	}
	// The protocol's wrapping is not the function's to pay for.
	limit := t.cfg.MaxResult + p.proto.overhead()
	data := p.proto.read(p.out, limit, early)
	if int64(len(data)) > limit {
		// Stop the flood at once; the call fails, noded's memory holds.
		p.kill()
		return output{tooLarge: true}
	}
	return output{data: data}
}

// readLog reads the function's stderr into the call's log, one line per
// entry, cutting lines longer than MaxLogLine.
func (t *Table) readLog(c *call, f *os.File) {
	r := bufio.NewReaderSize(f, t.cfg.MaxLogLine)
	truncated := false
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 && !truncated {
			s := string(bytes.TrimRight(line, "\r\n"))
			if err == bufio.ErrBufferFull {
				s += " [line truncated]"
			}
			c.appendLog(s)
		}
		switch {
		case err == bufio.ErrBufferFull:
			truncated = true // skip the rest of this long line
		case err != nil:
			return
		default:
			truncated = false
		}
	}
}

// tooLarge is the error of a call whose result is over the limit.
func (t *Table) tooLarge() *rpc.Error {
	return rpc.Errorf(rpc.KindResultTooLarge, "the function wrote more than %d bytes of result", t.cfg.MaxResult)
}

// failure describes a function process that exited badly, quoting its last
// log line, which is usually the reason.
func (t *Table) failure(c *call, ended *exit) *rpc.Error {
	var msg string
	switch {
	case ended.signal != "":
		msg = "function process killed by " + ended.signal
	case ended.code != nil:
		msg = fmt.Sprintf("function process exited with status %d", *ended.code)
	default:
		msg = "function process ended abnormally"
	}
	if last := c.lastLog(); last != "" {
		msg += ": " + last
	}
	return &rpc.Error{Kind: rpc.KindFunctionFailed, Message: msg}
}

// exitOf returns how the reaped process ended: its exit code, or the name
// of the signal that killed it.
func exitOf(p *process, waitErr error) *exit {
	st := p.cmd.ProcessState
	if st == nil {
		return &exit{}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &exit{signal: unix.SignalName(ws.Signal())}
	}
	var ee *os.SyscallError
	if errors.As(waitErr, &ee) {
		return &exit{}
	}
	code := st.ExitCode()
	return &exit{code: &code}
}

func kindOf(e *rpc.Error) rpc.Kind {
	if e == nil {
		return ""
	}
	return e.Kind
}
