package jobs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// frameOverhead is what a result frame adds around the result itself:
// {"result":...} and a newline, with room to spare.
const frameOverhead = 64

// maxHelloLine bounds the hello line a function process writes first.
const maxHelloLine = 4096

// output is what the stdout reader made of the function's stdout.
type output struct {
	result   []byte
	tooLarge bool
	err      *rpc.Error // a protocol error: bad hello, unwritable request
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
// args are the call's fn_args: the supervisor hands them to the process
// and keeps no copy, so a finished call holds only its result.
func (t *Table) supervise(c *call, args json.RawMessage) {
	defer t.supervisors.Done()
	p := c.proc

	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		t.readLog(c, p.stderr)
	}()
	frame := make(chan []byte, 1) // a complete result frame, as soon as read
	outDone := make(chan output, 1)
	go func() { outDone <- t.readOutput(c, p, args, frame) }()
	exited := make(chan error, 1)
	go func() { exited <- p.wait() }()

	var (
		waitErr  error
		early    []byte // the frame, while the log is still open
		logEnded = logDone
		done     bool
	)
	for wait := true; wait; {
		select {
		case early = <-frame:
			frame = nil
		case <-logEnded:
			logEnded = nil
		case waitErr = <-exited:
			wait = false
		}
		if early != nil && logEnded == nil && !done {
			if result, ok := t.earlyResult(c, early); ok {
				t.complete(c, rpc.StateSucceeded, result, nil)
				done = true
			}
			early = nil
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
		state, result, cerr := t.outcome(c, out, waitErr)
		t.complete(c, state, result, cerr)
	}
	if err := p.release(); err != nil {
		t.cfg.Logger.Warn("removing the call's cgroup", "call_id", c.id, "err", err)
	}
}

// earlyResult returns the result of a frame that settles the call before
// its process exits: a successful result, within the limit, of a call
// nobody asked to stop (a requested stop wins, see outcome).
func (t *Table) earlyResult(c *call, frame []byte) (json.RawMessage, bool) {
	if kind, _ := c.stopRequest(); kind != "" {
		return nil, false
	}
	fr, err := rpc.DecodeFunctionResult(frame)
	if err != nil || fr.Error != nil || int64(len(fr.Result)) > t.cfg.MaxResult {
		return nil, false
	}
	return fr.Result, true
}

// complete moves c to its terminal state, frees its slot and logs its end.
func (t *Table) complete(c *call, state rpc.State, result json.RawMessage, cerr *rpc.Error) {
	now := t.cfg.Now()
	// The slot is free before anyone learns the call ended, so a client
	// that starts its next call on the answer is never refused busy.
	t.mu.Lock()
	t.running--
	t.mu.Unlock()
	if err := c.finish(state, result, cerr, now); err != nil {
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

// readOutput writes the request to the process and reads its result. A
// framed process's result frame is also sent on frame as soon as its line
// is complete; reading goes on to EOF so the process never blocks on a
// full pipe.
func (t *Table) readOutput(c *call, p *process, args json.RawMessage, frame chan<- []byte) output {
	r := p.out
	if p.framed && !p.greeted {
		line, err := r.ReadSlice('\n')
		if err != nil {
			p.stdin.Close()
			if len(line) == 0 {
				return output{err: rpc.Errorf(rpc.KindProtocolError, "function process exited before its protocol hello")}
			}
			return output{err: rpc.Errorf(rpc.KindProtocolError, "function process did not finish its protocol hello line: %q", clip(line))}
		}
		if _, err := rpc.DecodeHello(line); err != nil {
			p.stdin.Close()
			c.proc.kill()
			return output{err: err.(*rpc.Error)}
		}
	}
	if p.framed {
		req, err := rpc.AppendFunctionRequest(nil, c.id, c.fnName, args)
		args = nil // the frame holds them now; let them go once written
		if err != nil {
			p.stdin.Close()
			c.proc.kill()
			return output{err: rpc.Errorf(rpc.KindInternal, "encoding the function request: %v", err)}
		}
		p.stdin.Write(req) // a process that exits early is seen by Wait
		p.stdin.Close()
	} else {
		// An executable function may exit without reading its stdin; a
		// write error then is its business, not a failure of noded.
		go func() {
			if len(args) == 0 {
				args = json.RawMessage("null")
			}
			p.stdin.Write(args)
			p.stdin.Close()
		}()
	}
	limit := t.cfg.MaxResult
	if p.framed {
		// The frame around the result is not the function's to pay for.
		limit += frameOverhead
	}
	var data []byte
	if p.framed {
		// The frame is one line: hand it over the moment it is whole.
		var buf bytes.Buffer
		for {
			chunk, err := r.ReadSlice('\n')
			buf.Write(chunk)
			if int64(buf.Len()) > limit {
				break
			}
			if err == nil {
				frame <- bytes.Clone(buf.Bytes())
				break
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		rest, _ := io.ReadAll(io.LimitReader(r, limit+1-int64(buf.Len())))
		data = append(buf.Bytes(), rest...)
	} else {
		data, _ = io.ReadAll(io.LimitReader(r, limit+1))
	}
	if int64(len(data)) > limit {
		// Stop the flood at once; the call fails, noded's memory holds.
		c.proc.kill()
		return output{tooLarge: true}
	}
	return output{result: data}
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

// outcome decides how the call ended from what was asked of it, what it
// wrote, and how its process exited. A requested stop wins over everything
// else: a cancelled call is cancelled even if it wrote a result late.
func (t *Table) outcome(c *call, out output, waitErr error) (rpc.State, json.RawMessage, *rpc.Error) {
	exitCode, signal := exitStatus(c.proc, waitErr)
	withExit := func(e *rpc.Error) *rpc.Error {
		e.ExitCode, e.Signal = exitCode, signal
		return e
	}
	if kind, reason := c.stopRequest(); kind != "" {
		state := rpc.StateCancelled
		if kind == rpc.KindAborted {
			state = rpc.StateAborted
		}
		return state, nil, withExit(&rpc.Error{Kind: kind, Message: reason})
	}
	if out.tooLarge {
		return rpc.StateFailed, nil, withExit(rpc.Errorf(rpc.KindResultTooLarge, "the function wrote more than %d bytes of result", t.cfg.MaxResult))
	}
	if out.err != nil {
		return rpc.StateFailed, nil, withExit(out.err)
	}
	exited0 := exitCode != nil && *exitCode == 0
	if c.proc.framed {
		fr, err := rpc.DecodeFunctionResult(out.result)
		if err != nil {
			if !exited0 {
				return rpc.StateFailed, nil, withExit(t.failure(c, exitCode, signal))
			}
			return rpc.StateFailed, nil, withExit(err.(*rpc.Error))
		}
		if fr.Error != nil {
			return rpc.StateFailed, nil, withExit(fr.Error)
		}
		if int64(len(fr.Result)) > t.cfg.MaxResult {
			return rpc.StateFailed, nil, withExit(rpc.Errorf(rpc.KindResultTooLarge, "the function wrote more than %d bytes of result", t.cfg.MaxResult))
		}
		if !exited0 {
			return rpc.StateFailed, nil, withExit(t.failure(c, exitCode, signal))
		}
		return rpc.StateSucceeded, fr.Result, nil
	}
	if !exited0 {
		return rpc.StateFailed, nil, withExit(t.failure(c, exitCode, signal))
	}
	raw := bytes.TrimSpace(out.result)
	if err := rpc.ValidResult(raw); err != nil {
		return rpc.StateFailed, nil, withExit(err.(*rpc.Error))
	}
	return rpc.StateSucceeded, raw, nil
}

// failure describes a function process that exited badly, quoting its last
// log line, which is usually the reason.
func (t *Table) failure(c *call, exitCode *int, signal string) *rpc.Error {
	var msg string
	switch {
	case signal != "":
		msg = "function process killed by " + signal
	case exitCode != nil:
		msg = fmt.Sprintf("function process exited with status %d", *exitCode)
	default:
		msg = "function process ended abnormally"
	}
	if last := c.lastLog(); last != "" {
		msg += ": " + last
	}
	return &rpc.Error{Kind: rpc.KindFunctionFailed, Message: msg}
}

// exitStatus returns the exit code, or the name of the signal that killed
// the process.
func exitStatus(p *process, waitErr error) (exitCode *int, signal string) {
	st := p.cmd.ProcessState
	if st == nil {
		return nil, ""
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return nil, unix.SignalName(ws.Signal())
	}
	var ee *os.SyscallError
	if errors.As(waitErr, &ee) {
		return nil, ""
	}
	code := st.ExitCode()
	return &code, ""
}

func clip(b []byte) string {
	const n = 120
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func kindOf(e *rpc.Error) rpc.Kind {
	if e == nil {
		return ""
	}
	return e.Kind
}
