package master

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

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
// opts.Keep). The release costs no request of its own when the Client
// starts another call on the node soon: it is queued in the Client and
// carried by the next start (rpc.StartRequest.Release), or, if none
// comes within 100 ms, sent on its own as a ReleaseFunction. A program
// that exits after its calls calls [Client.Close] first, which sends
// what is still queued.
//
// The error is nil only if the function succeeded. Otherwise it is one
// of:
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
	var tail []string       // the last LastLogLines lines, for a CallError
	var pause time.Duration // before the next round, after an early one
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
		if pause > 0 {
			if err := c.opts.clock.Sleep(ctx, pause); err != nil {
				return c.abandon(ctx, rec, &AbandonedCallError{Node: c.node, RequestID: rec.RequestID, FnName: fnName, Err: ctxErr(ctx)}, opts)
			}
		}
		asked, sent := c.roundWait(ctx), c.opts.clock.Now()
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
		pause = nextPause(pause, next, asked, c.opts.clock.Now().Sub(sent))
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

// The pause between wait rounds after one that came back early: a node
// answers a round when the call finishes, when it logs (if asked to wake
// on log lines) or when the round's time is up. One that answers a
// running call at once with nothing new (broken, or not noded) would
// otherwise be asked again at once, as fast as the network allows.
const (
	firstPause = 10 * time.Millisecond
	maxPause   = time.Second
)

// nextPause is the pause before the round after one that asked the node
// to wait asked and came back after took with rec: none after a round
// that brought log lines or took at least half of what it asked, else
// twice the last (firstPause at first, maxPause at most).
func nextPause(last time.Duration, rec *rpc.Call, asked, took time.Duration) time.Duration {
	if rec.Finished || len(rec.Log) > 0 || took >= asked/2 {
		return 0
	}
	return min(max(2*last, firstPause), maxPause)
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

// releaseDelay is how long a release waits in a Client's queue for a
// start to carry it before it is sent on its own: long enough for a
// master calling the node again and again to send one request per quick
// call, short enough that a master that stopped calling leaves nothing
// held for longer than a blink.
const releaseDelay = 100 * time.Millisecond

// releaseQueue holds the IDs of finished calls a Client is done with
// until a start carries them (rpc.StartRequest.Release) or the flush
// sends them, releaseDelay after the first of them was queued.
type releaseQueue struct {
	mu  sync.Mutex
	ids []string
	// first is when ids last went from empty to not.
	first time.Time
	// timer runs flushDue; armed is true from its setting until its run
	// or its stop, so that there is one flush due at a time.
	timer *time.Timer
	armed bool
	// closed is set by Close: releases are sent at once from then on.
	closed bool
}

// release has the node forget a finished call. It sends nothing itself:
// the ID waits in the queue for the next start to the node, or for the
// flush releaseDelay later. A closed Client, and one whose node is older
// than the release field, send it at once. A failure is logged, not
// returned: the result is already in hand, and a record left behind
// costs the node memory only until its retention period drops it.
func (c *Client) release(ctx context.Context, id string) {
	if c.noRelease.Load() || !c.queueRelease(id) {
		// A caller whose ctx ended just as the call finished still
		// gets the release sent; the retry policy bounds it.
		c.sendReleases(context.WithoutCancel(ctx), c.policies.Release, []string{id})
	}
}

// queueRelease queues id, and reports false instead on a closed Client.
func (c *Client) queueRelease(id string) bool {
	q := &c.releases
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	c.addReleases(id)
	return true
}

// requeueReleases puts back the IDs a failed start took. A Client closed
// meanwhile has sent its queue: they are logged as not released.
func (c *Client) requeueReleases(ids []string) {
	q := &c.releases
	q.mu.Lock()
	if !q.closed {
		c.addReleases(ids...)
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	for _, id := range ids {
		c.logUnreleased(id, errClosedDuringStart)
	}
}

// errClosedDuringStart is why the releases of a start that failed after
// Close sent the queue are not released.
var errClosedDuringStart = errors.New("the start that carried the release failed after the client was closed")

// addReleases queues ids, oldest first, and sets the flush due
// releaseDelay after the first of the queue. c.releases.mu is held.
func (c *Client) addReleases(ids ...string) {
	q := &c.releases
	if len(q.ids) == 0 {
		q.first = time.Now()
	}
	q.ids = append(q.ids, ids...)
	if q.armed {
		return
	}
	q.armed = true
	if q.timer == nil {
		q.timer = time.AfterFunc(c.opts.releaseDelay, c.flushDue)
		return
	}
	q.timer.Reset(c.opts.releaseDelay)
}

// takeReleases takes up to n queued IDs, oldest first, for a start to
// carry; an emptied queue has no flush due.
func (c *Client) takeReleases(n int) []string {
	q := &c.releases
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.ids))
	if n <= 0 {
		return nil
	}
	taken := slices.Clone(q.ids[:n])
	q.ids = slices.Delete(q.ids, 0, n)
	// A flush that Stop is too late for finds the queue empty, or
	// refilled and not yet due.
	if len(q.ids) == 0 && q.armed && q.timer.Stop() {
		q.armed = false
	}
	return taken
}

// closeReleases marks the queue closed and takes what it holds.
func (c *Client) closeReleases() []string {
	q := &c.releases
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.armed && q.timer.Stop() {
		q.armed = false
	}
	ids := q.ids
	q.ids = nil
	return ids
}

// flushDue is the flush: it sends the queue as ReleaseFunction requests
// under the Release policy once its first ID has waited releaseDelay.
// A run that a start or Close came before finds nothing, or IDs queued
// since, and sets itself for when they are due.
func (c *Client) flushDue() {
	q := &c.releases
	q.mu.Lock()
	if len(q.ids) == 0 {
		q.armed = false
		q.mu.Unlock()
		return
	}
	if wait := c.opts.releaseDelay - time.Since(q.first); wait > 0 {
		q.timer.Reset(wait)
		q.mu.Unlock()
		return
	}
	ids := q.ids
	q.ids, q.armed = nil, false
	q.mu.Unlock()
	c.sendReleases(context.Background(), c.policies.Release, ids)
}

// FlushReleases sends the releases queued now (see [Client.Call]) at
// once, each a ReleaseFunction under the Release policy, instead of
// leaving them for the next start or the flush due releaseDelay after
// them. A master calls it when it stops calling the node for a while
// and wants the node to hold nothing of it; Close does it too. Each
// failure is logged (warn); the error says how many releases failed, and
// the first failure. Failed releases are not queued again: the node drops
// those calls after its retention period.
func (c *Client) FlushReleases(ctx context.Context) error {
	ids := c.takeReleases(math.MaxInt)
	if failed, first := c.sendReleases(ctx, c.policies.Release, ids); failed > 0 {
		return fmt.Errorf("%s: %d of %d releases failed, the first: %w", c.node, failed, len(ids), first)
	}
	return nil
}

// sendReleases sends each of ids as a ReleaseFunction under pol and logs
// each one that fails. After a failure that is not the node's answer
// about that call (unreachable, busy, ctx ended, ...), the rest are not
// sent but logged with it: they would meet the same. It returns how many
// failed and the first failure.
func (c *Client) sendReleases(ctx context.Context, pol Policy, ids []string) (failed int, first error) {
	for i, id := range ids {
		_, err := c.invoke(ctx, fasthttp.MethodPut, rpc.PathReleaseFunction, pol, &rpc.IDRequest{ID: id}, nil)
		// unknown_call: no longer held. A start that carried it, and
		// failed after the node released it, is the usual reason; an
		// earlier attempt whose answer was lost is another.
		if err == nil || errors.Is(err, rpc.ErrUnknownCall) {
			continue
		}
		if first == nil {
			first = err
		}
		failed++
		c.logUnreleased(id, err)
		switch rpc.KindOf(err) {
		case rpc.KindLost, rpc.KindBadRequest:
			continue // this call's own answer
		}
		for _, rest := range ids[i+1:] {
			c.logUnreleased(rest, err)
		}
		return failed + len(ids) - i - 1, first
	}
	return failed, first
}

// logUnreleased logs a release that failed with err.
func (c *Client) logUnreleased(id string, err error) {
	c.log.Warn("release failed; the node drops the call after its retention period", "node", c.node, "call_id", id, "err", err)
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
