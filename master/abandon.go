package master

import (
	"context"
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// AbandonedCallError says that ctx ended (context.Canceled or
// context.DeadlineExceeded) before a call did, so [Client.Call],
// [Client.Await], [CallEach] or [Client.StartFunction] stopped waiting
// for it. The call goes on running on the node, unless Cancelled: ID is
// the call to wait for again ([Client.Await]) or to cancel. It unwraps to
// ctx's error, so errors.Is(err, context.Canceled) holds as before.
//
// A start that ctx ended before the node answered has its ID found out
// by repeating the start, with the same request_id and a timeout of 0,
// in a short context of its own: noded answers a repeated request_id
// with the call it started, and starts nothing more. A start that had
// not reached the node starts then, so that the outcome is the same
// either way: one call, whose ID is here. Only when the node does not
// answer that either is ID empty; the call may then be running, and a
// start with RequestID finds it. A start none of whose attempts can have
// reached the node (connections refused, or answered busy) started
// nothing, and is not repeated: its error is ctx's alone.
type AbandonedCallError struct {
	// Node is the node's host:port.
	Node string
	// ID is the function-call ID, empty if the node could not be asked.
	ID string
	// RequestID is the request_id of the call's start.
	RequestID string
	// FnName is the function that was called.
	FnName string
	// State is the call's state as last seen: running, or how it ended
	// if it ended before the client gave up (or by Cancelled).
	State rpc.State
	// Cancelled is true when the client had the node cancel the call
	// ([CallOptions.CancelAbandoned]).
	Cancelled bool
	// Err is ctx's error.
	Err error
}

// Error reads "node1:1811: stopped waiting for call ID (fn), which is
// still running: context canceled".
func (e *AbandonedCallError) Error() string {
	switch {
	case e.ID == "":
		return fmt.Sprintf("%s: stopped waiting for %s before the node said the call's ID; it may be running (request_id %s): %v", e.Node, e.FnName, e.RequestID, e.Err)
	case e.Cancelled:
		return fmt.Sprintf("%s: stopped waiting for call %s (%s), and cancelled it: %v", e.Node, e.ID, e.FnName, e.Err)
	case e.State == rpc.StateRunning || e.State == "":
		return fmt.Sprintf("%s: stopped waiting for call %s (%s), which is still running: %v", e.Node, e.ID, e.FnName, e.Err)
	}
	return fmt.Sprintf("%s: stopped waiting for call %s (%s), which ended %s: %v", e.Node, e.ID, e.FnName, e.State, e.Err)
}

// Unwrap returns ctx's error.
func (e *AbandonedCallError) Unwrap() error { return e.Err }

// isCtxErr reports whether err is a context's end.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// detached is the context of what the client still does for a call after
// its caller's ctx ended: find out its ID, cancel it. It keeps ctx's
// values, not its end, and is bounded by one socket timeout, so that a
// caller who pressed Ctrl-C waits seconds at most.
func (c *Client) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout)
}

// recoverStart finds out the call of a start that ctx ended after the
// start was sent and before its answer came (see [AbandonedCallError]).
// A node that answers the repeated start with a request error ran
// nothing, and cause, ctx's error, is returned alone.
func (c *Client) recoverStart(ctx context.Context, req rpc.StartRequest, cause error) (*rpc.Call, error) {
	ab := &AbandonedCallError{Node: c.node, RequestID: req.RequestID, FnName: req.FnName, Err: ctxErr(ctx)}
	rctx, cancel := c.detached(ctx)
	defer cancel()
	req.Timeout = 0
	once := Policy{MaxAttempts: 1, MaxElapsed: c.opts.Timeout}
	var rec rpc.Call
	_, err := c.invoke(rctx, fasthttp.MethodPut, rpc.PathStartFunction, once, &req, &rec)
	var rerr *rpc.Error
	switch {
	case errors.As(err, &rerr) && rpc.KindOf(err) != rpc.KindUnreachable:
		return nil, cause
	case err != nil:
		c.log.Warn("stopped waiting for a start, and the node did not say which call it started",
			"node", c.node, "fn", req.FnName, "request_id", req.RequestID, "err", err)
		return nil, ab
	}
	ab.ID, ab.State = rec.ID, rec.State
	c.log.Info("stopped waiting for a start; the call goes on", "node", c.node, "call_id", rec.ID, "fn", req.FnName, "state", rec.State)
	return &rec, ab
}

// abandon settles a call its caller stopped waiting for: with
// opts.CancelAbandoned it has the node cancel it, and it releases a call
// found finished (unless opts.Keep). It returns the latest record and
// ab, completed.
func (c *Client) abandon(ctx context.Context, rec *rpc.Call, ab *AbandonedCallError, opts CallOptions) (*rpc.Call, error) {
	if rec != nil {
		ab.ID, ab.State = rec.ID, rec.State
	}
	if ab.ID == "" {
		return rec, ab
	}
	dctx, cancel := c.detached(ctx)
	defer cancel()
	if opts.CancelAbandoned && (rec == nil || !rec.Finished) {
		got, err := c.CancelFunction(dctx, ab.ID)
		if err != nil {
			c.log.Warn("could not cancel a call its caller stopped waiting for; it goes on", "node", c.node, "call_id", ab.ID, "err", err)
			return rec, ab
		}
		rec, ab.Cancelled, ab.State = got, true, got.State
	}
	if rec != nil && rec.Finished && !opts.Keep {
		c.release(dctx, rec.ID)
	}
	return rec, ab
}
