package master

import (
	"context"
	"errors"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// CallOptions tune [Client.Call], [Client.Await] and [CallEach].
type CallOptions struct {
	// AbortAfter, when above 0, makes the node kill the function once it
	// has run that long; the call then ends with rpc.ErrAborted.
	AbortAfter time.Duration
	// RequestID identifies the start so a retry never runs the function
	// twice; empty gets a fresh UUID. Set it to make a start idempotent
	// across restarts of the master itself.
	RequestID string
	// OnLog, if set, receives the function's log lines as they arrive,
	// in order, from the goroutine running the call. In a fan-out it is
	// called by one call at a time. Log lines are best-effort: lines the
	// node no longer holds are skipped, and LogLine.N shows the gap.
	OnLog func(LogLine)
	// Keep leaves the finished call on the node instead of releasing it;
	// the node then drops it after its retention period.
	Keep bool
	// CancelAbandoned has the node cancel the call when ctx ends before
	// the call does: a master that shuts down, or gives up on a job,
	// leaves no work behind. By default ctx's end stops the waiting,
	// not the work, and the [*AbandonedCallError] says which call goes
	// on. Either way the client spends at most one socket timeout on it
	// after ctx has ended.
	CancelAbandoned bool
}

// LogLine is one line of a function's log.
type LogLine struct {
	// Node is the node's host:port.
	Node string
	// CallID is the function-call ID.
	CallID string
	// N is the line's number in the function's log, from 0.
	N int
	// Text is the line, without its newline.
	Text string
}

// Call runs the function fn with args (encoded as JSON; pass a
// json.RawMessage to send bytes as they are) on the node and returns its
// final call record once it has finished.
//
// Call starts the function, then waits in rounds of half the socket
// timeout until it finishes or ctx ends, streaming log lines to
// opts.OnLog, and releases the call once its result is read (unless
// opts.Keep). The error is nil only if the function succeeded. Otherwise
// it is one of:
//   - a [*CallError] for a call that ended without succeeding or that the
//     node lost (it restarted): errors.Is with rpc.ErrFunctionFailed,
//     rpc.ErrCancelled, rpc.ErrAborted, rpc.ErrLost, ...;
//   - a request error the node answered: rpc.ErrUnknownFunction,
//     rpc.ErrBadRequest, rpc.ErrBusy (after retries), ...;
//   - an [*UnreachableError] (rpc.ErrUnreachable);
//   - ctx's error (context.Canceled, context.DeadlineExceeded);
//   - [ErrOffline].
//
// With an unreachable node the call may still be running: Call then
// returns the last record it got along with the error, and its ID is the
// call to wait for again or to cancel. When ctx ends first, even during
// the start, the error is an [*AbandonedCallError] (matching ctx's error
// with errors.Is) that names the node and the call's ID; unless no
// attempt of the start can have reached the node, in which case no call
// exists and the error is ctx's alone. The function is
// not cancelled for the caller unless opts.CancelAbandoned: giving up
// waiting is not stopping the work.
func (c *Client) Call(ctx context.Context, fn string, args any, opts CallOptions) (*rpc.Call, error) {
	raw, err := encodeArgs(args)
	if err != nil {
		return nil, err
	}
	return c.call(ctx, fn, raw, opts)
}

func (c *Client) call(ctx context.Context, fn string, args json.RawMessage, opts CallOptions) (*rpc.Call, error) {
	rec, err := c.StartFunction(ctx, rpc.StartRequest{
		FnName:     fn,
		FnArgs:     args,
		Timeout:    rpc.Seconds(c.roundWait(ctx)),
		AbortAfter: rpc.Seconds(opts.AbortAfter),
		RequestID:  opts.RequestID,
		// With a watcher the first round also ends at the first log
		// line, as every later one does, so lines show up live.
		WakeOnLog: opts.OnLog != nil,
	})
	var ab *AbandonedCallError
	if errors.As(err, &ab) {
		return c.abandon(ctx, rec, ab, opts)
	}
	if err != nil {
		return nil, err
	}
	return c.follow(ctx, rec, opts)
}

// Await waits for a call started earlier (by StartFunction, or by a Call
// that returned early) to finish, exactly as [Client.Call] does after its
// start: in rounds, streaming the log from its first line, releasing the
// call once read unless opts.Keep, and with opts.CancelAbandoned
// cancelling it if ctx ends first. opts.AbortAfter and opts.RequestID
// are not used.
func (c *Client) Await(ctx context.Context, id string, opts CallOptions) (*rpc.Call, error) {
	rec, err := c.wait(ctx, id, 0, opts.OnLog != nil)
	if err != nil && isCtxErr(err) {
		return c.abandon(ctx, nil, &AbandonedCallError{Node: c.node, ID: id, State: rpc.StateRunning, Err: ctxErr(ctx)}, opts)
	}
	if err != nil {
		return nil, err
	}
	return c.follow(ctx, rec, opts)
}

// follow takes a call from its latest record to its end.
func (c *Client) follow(ctx context.Context, rec *rpc.Call, opts CallOptions) (*rpc.Call, error) {
	fnName := rec.FnName
	var tail []string // the last LastLogLines lines, for a CallError
	for {
		// The record's lines are those from offset on, less the ones the
		// node dropped; its LogOffset is the number written so far.
		first := rec.LogOffset - len(rec.Log)
		for i, text := range rec.Log {
			if opts.OnLog != nil {
				opts.OnLog(LogLine{Node: c.node, CallID: rec.ID, N: first + i, Text: text})
			}
			tail = append(tail, text)
		}
		if len(tail) > LastLogLines {
			tail = append(tail[:0], tail[len(tail)-LastLogLines:]...)
		}
		if rec.Finished {
			break
		}
		next, err := c.wait(ctx, rec.ID, rec.LogOffset, opts.OnLog != nil)
		if errors.Is(err, rpc.ErrLost) {
			return rec, &CallError{Node: c.node, ID: rec.ID, FnName: fnName, Err: asRPCError(err), Log: tail}
		}
		if err != nil && isCtxErr(err) {
			return c.abandon(ctx, rec, &AbandonedCallError{Node: c.node, RequestID: rec.RequestID, FnName: fnName, Err: ctxErr(ctx)}, opts)
		}
		if err != nil {
			return rec, err
		}
		rec = next
	}
	if !opts.Keep {
		c.release(ctx, rec.ID)
	}
	if rec.State == rpc.StateSucceeded {
		return rec, nil
	}
	return rec, &CallError{Node: c.node, ID: rec.ID, FnName: fnName, Err: outcome(rec), Log: tail}
}

// wait is one round of waiting (see roundWait). With live set it wakes
// early for new log lines, so a watcher sees them live.
func (c *Client) wait(ctx context.Context, id string, offset int, live bool) (*rpc.Call, error) {
	return c.WaitForFunction(ctx, rpc.WaitRequest{
		ID:        id,
		Timeout:   rpc.Seconds(c.roundWait(ctx)),
		LogOffset: offset,
		WakeOnLog: live,
	})
}

// roundWait is how long a round asks the node to wait: half the socket
// timeout, or half of what is left before ctx's deadline if that is less,
// so that the node answers, with the call's ID, before the caller gives
// up, without the detour of recoverStart.
func (c *Client) roundWait(ctx context.Context) time.Duration {
	w := c.opts.Timeout / 2
	if d, ok := ctx.Deadline(); ok {
		w = min(w, time.Until(d)/2)
	}
	return max(w, 0)
}

// release forgets a finished call on the node. Its failure is logged, not
// returned: the result is already in hand, and a record left behind costs
// the node memory only until its retention period drops it.
func (c *Client) release(ctx context.Context, id string) {
	// A caller whose ctx ended just as the call finished still gets the
	// release sent; the retry policy bounds it.
	if err := c.ReleaseFunction(context.WithoutCancel(ctx), id); err != nil {
		c.log.Warn("release failed; the node drops the call after its retention period", "node", c.node, "call_id", id, "err", err)
	}
}

// outcome is the error of a finished call that did not succeed. A node
// always sends one; the fallback keeps a record that lacks it typed.
func outcome(rec *rpc.Call) *rpc.Error {
	if rec.Error != nil {
		return rec.Error
	}
	kind := rpc.KindFunctionFailed
	switch rec.State {
	case rpc.StateCancelled:
		kind = rpc.KindCancelled
	case rpc.StateAborted:
		kind = rpc.KindAborted
	case rpc.StateLost:
		kind = rpc.KindLost
	}
	return rpc.Errorf(kind, "call ended %s", rec.State)
}

// asRPCError returns the *rpc.Error in err's chain; callers know there is one.
func asRPCError(err error) *rpc.Error {
	var e *rpc.Error
	errors.As(err, &e)
	return e
}

// encodeArgs encodes a function's arguments once, so a fan-out does not
// encode them per node.
func encodeArgs(args any) (json.RawMessage, error) {
	if args == nil {
		return nil, nil
	}
	raw, err := rpc.Marshal(args)
	if err != nil {
		return nil, rpc.Errorf(rpc.KindBadRequest, "encoding the function's arguments: %v", err)
	}
	return raw, nil
}
