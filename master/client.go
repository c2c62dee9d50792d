package master

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// Options configure a [Client]. Exactly one of TLS and Insecure must be
// set; the zero value of every other field is a sensible default.
type Options struct {
	// TLS is the configuration of the mutual TLS noded requires: the
	// client certificate to present and the cluster CA that the node's
	// certificate must chain to (see [LoadTLS]). The client checks that
	// the node's certificate names the host of the node's address, so a
	// node presenting another node's certificate is refused; set
	// ServerName to check another name instead. TLS 1.3 is the minimum.
	TLS *tls.Config
	// Insecure talks plain HTTP, to a noded started with --insecure
	// (which serves on loopback addresses only). It must be asked for
	// explicitly so that a forgotten TLS configuration never silently
	// means plain text.
	Insecure bool
	// Timeout is the socket timeout: no HTTP request is waited on longer.
	// StartFunction and WaitForFunction ask the node to wait at most half
	// of it, so a live node always answers well within it. Default 10s.
	Timeout time.Duration
	// Retry is the retry policy of each procedure; zero fields take the
	// defaults of DefaultRetryPolicies.
	Retry RetryPolicies
	// MaxConns caps the connections to the node; 0 is fasthttp's default.
	MaxConns int
	// IdleTimeout is how long an idle keep-alive connection is kept.
	// Default 10s.
	IdleTimeout time.Duration
	// Logger receives retries (debug) and failed releases (warn). Nil
	// discards them.
	Logger *slog.Logger
	// MaxAnswer bounds the body of any one answer read from the node,
	// in bytes. Past it the procedure fails at once with an
	// [*AnswerTooLargeError], without reading further, without retrying,
	// and the connection is dropped. Each procedure in flight holds at
	// most this much of an answer. 0 is [DefaultMaxAnswer], which fits
	// every answer of a noded with its default limits; raise it for
	// nodes run with a larger --max-result or --max-log-lines
	// (doc/client.md has the arithmetic).
	MaxAnswer int64

	// clock and randN are seams for tests of the retry logic;
	// releaseDelay, for tests of the release queue.
	clock        clock
	randN        func(n int64) int64
	releaseDelay time.Duration
}

// DefaultTimeout is the socket timeout a zero [Options.Timeout] gets.
const DefaultTimeout = 10 * time.Second

// DefaultMaxAnswer is the bound a zero [Options.MaxAnswer] gets, 41438752
// bytes (39.5 MiB): the largest answer a noded with its default limits
// sends, a call record holding a whole result and a whole log at once.
//
//	  16 MiB            the result, at most --max-result (16 MiB), counted
//	                    once: it is JSON already, meant to travel as it is
//	+ 1000 × 24596 B    the log, at most --max-log-lines (1000) lines, each
//	                    at most 4096 bytes of which every one may take six
//	                    escaped ("\u001b"), plus " [line truncated]",
//	                    its quotes and a comma
//	+ 64 KiB            the rest of the record: ID, name, state, times, and
//	                    an error message quoting the last log line
//
// The node's limits are the defaults of package jobs, which a test holds
// this to. noded's JSON encoder does write <, > and & inside the result
// as six bytes ("\u003c"), so a result made mostly of them can cross the
// bound; doc/client.md says what to set then.
const DefaultMaxAnswer = int64(nodeMaxResult + nodeMaxLogLines*(escapedByteMax*nodeMaxLogLine+logLineFraming) + recordFraming)

// The arithmetic of DefaultMaxAnswer.
const (
	nodeMaxResult   = 16 << 20 // jobs.DefaultMaxResult
	nodeMaxLogLines = 1000     // jobs.DefaultMaxLogLines
	nodeMaxLogLine  = 4096     // jobs.DefaultMaxLogLine
	// escapedByteMax is the most one byte of a string takes in JSON: a
	// control character or a byte of invalid UTF-8 is six ("\ufffd").
	escapedByteMax = 6
	logLineFraming = len(" [line truncated]") + len(`"",`)
	recordFraming  = 64 << 10
)

// Client talks to the noded of one node. It is safe for concurrent use;
// a master keeps one per node for as long as the node is in its cluster.
// An idle Client holds no goroutine.
type Client struct {
	node      string
	opts      Options
	t         transport
	policies  RetryPolicies
	log       *slog.Logger
	offline   atomic.Bool
	lastReply atomic.Int64 // UnixNano of the last answer, 0 if none
	// releases wait for a start to carry them (see Client.release).
	releases releaseQueue
	// noRelease is set once the node refused a start's release field:
	// a noded older than it, to which releases go as ReleaseFunction.
	noRelease atomic.Bool
}

// New returns a Client for the node at addr ("host:port"). It touches no
// network: connections are made by the first procedure.
func New(addr string, opts Options) (*Client, error) {
	switch {
	case opts.Insecure && opts.TLS != nil:
		return nil, errors.New("master: Options.TLS and Options.Insecure both set: Insecure talks plain HTTP, set one")
	case !opts.Insecure && opts.TLS == nil:
		return nil, errors.New("master: no Options.TLS: noded requires a client certificate (see LoadTLS); set Options.Insecure only for a noded serving plain HTTP on loopback")
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return nil, fmt.Errorf("master: node address %q is not host:port", addr)
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		// Refused here, not retried by every procedure as a dial error.
		return nil, fmt.Errorf("master: node address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("master: negative socket timeout %s", opts.Timeout)
	}
	if opts.MaxAnswer == 0 {
		opts.MaxAnswer = DefaultMaxAnswer
	}
	if opts.MaxAnswer < 0 {
		return nil, fmt.Errorf("master: negative Options.MaxAnswer %d", opts.MaxAnswer)
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = fasthttp.DefaultMaxIdleConnDuration
	}
	if opts.clock == nil {
		opts.clock = realClock{}
	}
	if opts.randN == nil {
		opts.randN = randN
	}
	if opts.releaseDelay == 0 {
		opts.releaseDelay = releaseDelay
	}
	c := &Client{node: addr, opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	def := DefaultRetryPolicies()
	for _, p := range []struct {
		name     string
		dst, set *Policy
		def      Policy
	}{
		{"StartFunction", &c.policies.Start, &opts.Retry.Start, def.Start},
		{"WaitForFunction", &c.policies.Wait, &opts.Retry.Wait, def.Wait},
		{"CancelFunction", &c.policies.Cancel, &opts.Retry.Cancel, def.Cancel},
		{"ReleaseFunction", &c.policies.Release, &opts.Retry.Release, def.Release},
		{"ListFunctions and ListCalls", &c.policies.List, &opts.Retry.List, def.List},
		{"Version", &c.policies.Version, &opts.Retry.Version, def.Version},
	} {
		pol, err := p.set.withDefaults(p.def, opts.Timeout, p.name)
		if err != nil {
			return nil, err
		}
		*p.dst = pol
	}
	c.t = newHTTPTransport(addr, &opts)
	return c, nil
}

// Node returns the node's address, as given to New.
func (c *Client) Node() string { return c.node }

// Policies returns the retry policies in force, defaults filled in.
func (c *Client) Policies() RetryPolicies { return c.policies }

// LastAnswer returns when the node last answered any request, error
// answers included, or the zero time if it never has. A master reads it
// to tell a node that is slow from one that is silent.
func (c *Client) LastAnswer() time.Time {
	n := c.lastReply.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// SetOffline marks the node offline (true) or back online (false). While
// it is offline every procedure fails at once with an error matching
// [ErrOffline], and fan-outs skip it, without touching the network.
func (c *Client) SetOffline(offline bool) { c.offline.Store(offline) }

// Offline reports whether the node is marked offline.
func (c *Client) Offline() bool { return c.offline.Load() }

// Close sends the releases still queued (see [Client.Call]), then drops
// the client's idle connections. Close is for a master that stops
// talking to a node, and for a program about to exit, which would
// otherwise leave the calls it read on the node until its retention
// period drops them.
//
// Close spends at most one socket timeout on the releases: each is sent
// once, without retry, and those not done within that time (the node
// silent, say) are logged (warn) and left to the retention period.
//
// The Client stays usable. From then on a finished call's release is not
// queued but sent at once, as a ReleaseFunction, by the Call that read
// its result: a closed Client has no later start, and no later Close, to
// count on.
func (c *Client) Close() {
	if ids := c.closeReleases(); len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		c.sendReleases(ctx, Policy{MaxAttempts: 1, MaxElapsed: c.opts.Timeout}, ids)
		cancel()
	}
	c.t.closeIdle()
}

// StartFunction starts a function on the node and waits up to
// req.Timeout (capped at half the socket timeout) for it to finish. The
// record says whether it finished; if not, its ID is what to wait on.
//
// A req without RequestID gets a fresh one, so that retrying the start
// after a lost answer returns the first call instead of starting another.
//
// The start also carries the releases the Client has queued (up to
// rpc.MaxRelease in req.Release with those req holds already), which the
// node carries out before it starts the call. If the start fails, they
// go back into the queue. A noded older than the release field refuses
// it as an unknown field; the start is then sent again without it, with
// the same request_id (the refusal ran nothing), the releases go out as
// ReleaseFunction requests, and this Client never sends the field to
// that node again.
//
// When ctx ends after the start was sent and before its answer came,
// StartFunction finds out the call's ID (see [AbandonedCallError]) and
// returns its record with an *AbandonedCallError; a ctx that has ended
// before sends nothing.
func (c *Client) StartFunction(ctx context.Context, req rpc.StartRequest) (*rpc.Call, error) {
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	req.Timeout = c.capWait(req.Timeout)
	var taken []string
	if !c.noRelease.Load() {
		if taken = c.takeReleases(rpc.MaxRelease - len(req.Release)); len(taken) > 0 {
			// Clipped: the caller's array is not written to.
			req.Release = append(slices.Clip(req.Release), taken...)
		}
	}
	var rec rpc.Call
	unanswered, err := c.invoke(ctx, fasthttp.MethodPut, rpc.PathStartFunction, c.policies.Start, &req, &rec)
	if len(req.Release) > 0 && refusesRelease(err) {
		// Refused at decoding, before anything ran: the same
		// request_id is safe to send again.
		c.noRelease.Store(true)
		unreleased := append(slices.Clip(req.Release), c.takeReleases(math.MaxInt)...)
		req.Release, taken = nil, nil
		unanswered, err = c.invoke(ctx, fasthttp.MethodPut, rpc.PathStartFunction, c.policies.Start, &req, &rec)
		c.sendReleases(context.WithoutCancel(ctx), c.policies.Release, unreleased)
	}
	if err != nil && len(taken) > 0 {
		// The node may have released them before it failed: a double
		// release is ignored by a start, and done for ReleaseFunction.
		c.requeueReleases(taken)
	}
	if err != nil && unanswered && isCtxErr(err) {
		return c.recoverStart(ctx, req, err)
	}
	if err != nil {
		return nil, err
	}
	if err := c.checkRecord(rpc.PathStartFunction, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// checkRecord refuses a call record a node could not have sent: one
// without a call ID, in no state a call has, or with an error of a kind
// no call ends with (rpc.Kind.EndsCalls). Followed, a record with no ID
// would be waited on for ever; and a call's error of a request's kind,
// busy say, would tell the caller that a call that ran never did.
func (c *Client) checkRecord(path string, rec *rpc.Call) error {
	var why *rpc.Error
	switch {
	case rec.ID == "":
		why = rpc.Errorf(rpc.KindProtocolError, "node answered a call record without a call ID")
	case rec.State != rpc.StateRunning && !rec.State.Finished(), rec.Finished != rec.State.Finished():
		why = rpc.Errorf(rpc.KindProtocolError, "node answered call %s in state %q with finished %v", rec.ID, rpc.Clip(string(rec.State), 40), rec.Finished)
	case rec.Error != nil && !rec.Error.Kind.EndsCalls():
		why = rpc.Errorf(rpc.KindProtocolError, "node answered call %s with an error of kind %q, which no call ends with: %s",
			rec.ID, rpc.Clip(string(rec.Error.Kind), 40), rpc.Clip(rec.Error.Message, 200))
	default:
		return nil
	}
	return fmt.Errorf("%s: %s: %w", c.node, strings.TrimPrefix(path, "/"), why)
}

// refusesRelease reports whether err is a start's refusal by a noded
// older than rpc.StartRequest.Release: its strict decoding names the
// field it does not know.
func refusesRelease(err error) bool {
	var e *rpc.Error
	return errors.As(err, &e) && e.Kind == rpc.KindBadRequest && strings.Contains(e.Message, `unknown field "release"`)
}

// WaitForFunction waits up to req.Timeout (capped at half the socket
// timeout) for a call to finish and returns its record, with the log
// lines from req.LogOffset on. A call of an earlier daemon of the node
// fails with rpc.ErrLost.
func (c *Client) WaitForFunction(ctx context.Context, req rpc.WaitRequest) (*rpc.Call, error) {
	req.Timeout = c.capWait(req.Timeout)
	var rec rpc.Call
	if _, err := c.invoke(ctx, fasthttp.MethodPut, rpc.PathWaitForFunction, c.policies.Wait, &req, &rec); err != nil {
		return nil, err
	}
	if err := c.checkRecord(rpc.PathWaitForFunction, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// CancelFunction stops a running call: the node signals the function's
// process group, and the call ends cancelled. The node waits for the
// process to end for at most rpc.DefaultCancelWait (and never more than
// half the socket timeout); the record is the call as the cancel left it,
// still running if the function takes its grace period to die. A call
// that had already finished keeps its outcome.
func (c *Client) CancelFunction(ctx context.Context, id string) (*rpc.Call, error) {
	var rec rpc.Call
	wait := c.capWait(rpc.Seconds(rpc.DefaultCancelWait))
	if _, err := c.invoke(ctx, fasthttp.MethodPut, rpc.PathCancelFunction, c.policies.Cancel, &rpc.CancelRequest{ID: id, Timeout: &wait}, &rec); err != nil {
		return nil, err
	}
	if err := c.checkRecord(rpc.PathCancelFunction, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// ReleaseFunction tells the node to forget a finished call. A release
// answered unknown_call after an earlier attempt got no answer is taken as
// done: the earlier attempt is what released it.
func (c *Client) ReleaseFunction(ctx context.Context, id string) error {
	unanswered, err := c.invoke(ctx, fasthttp.MethodPut, rpc.PathReleaseFunction, c.policies.Release, &rpc.IDRequest{ID: id}, nil)
	if unanswered && errors.Is(err, rpc.ErrUnknownCall) {
		return nil
	}
	return err
}

// ListFunctions returns the functions the node offers: its Go functions
// and the files of its functions directory, each runnable or not, with
// why not. A node of protocol 1 answered this procedure with its calls;
// its answer fails here with a protocol error that says so.
func (c *Client) ListFunctions(ctx context.Context) ([]rpc.Function, error) {
	var list rpc.ListFunctionsResponse
	if _, err := c.invoke(ctx, fasthttp.MethodGet, rpc.PathListFunctions, c.policies.List, nil, &list); err != nil {
		if errors.Is(err, rpc.ErrProtocolError) {
			return nil, fmt.Errorf("%w (a noded of protocol 1 lists its calls here instead; noderpc version tells its protocol)", err)
		}
		return nil, err
	}
	return list.Functions, nil
}

// ListCalls returns every call the node holds, running or finished and
// not yet released, oldest first.
func (c *Client) ListCalls(ctx context.Context) ([]rpc.CallSummary, error) {
	var list rpc.ListCallsResponse
	if _, err := c.invoke(ctx, fasthttp.MethodGet, rpc.PathListCalls, c.policies.List, nil, &list); err != nil {
		return nil, err
	}
	return list.Calls, nil
}

// Version returns the node's release, protocol version and boot id. A
// boot id that differs from an earlier answer means the node restarted
// and lost the calls it was running.
func (c *Client) Version(ctx context.Context) (*rpc.VersionResponse, error) {
	var v rpc.VersionResponse
	if _, err := c.invoke(ctx, fasthttp.MethodGet, rpc.PathVersion, c.policies.Version, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// capWait bounds how long a request may ask the node to wait, in wire
// seconds: half the socket timeout leaves the other half for the answer
// to arrive, which is what makes silence mean "unreachable".
func (c *Client) capWait(seconds float64) float64 {
	return min(seconds, rpc.Seconds(c.opts.Timeout/2))
}

// invoke runs one procedure under its retry policy: it encodes in, sends
// it until an attempt is answered or the policy gives up, and decodes a
// 2xx answer into out (when out is not nil). It also reports whether an
// attempt may have reached the node without its answer being read: one
// cut short by ctx, or one that failed after its connection was made.
// Attempts the node answered (busy, say) and connections that were never
// made (refused, dial timeout) did nothing on the node.
func (c *Client) invoke(ctx context.Context, method, path string, pol Policy, in, out any) (unanswered bool, err error) {
	proc := strings.TrimPrefix(path, "/")
	if c.offline.Load() {
		return false, fmt.Errorf("%s: %s: %w", c.node, proc, ErrOffline)
	}
	if err := ctx.Err(); err != nil {
		// Sent now, the request would go on without its caller.
		return false, fmt.Errorf("%s: %s: %w", c.node, proc, err)
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = rpc.Marshal(in); err != nil {
			return false, fmt.Errorf("%s: %s: encoding the request: %w", c.node, proc, rpc.Errorf(rpc.KindBadRequest, "%v", err))
		}
	}
	clk := c.opts.clock
	start := clk.Now()
	giveUp := start.Add(pol.MaxElapsed)
	var lastErr error // the last attempt's failure: transport, or busy
	attempt := 0
	for {
		attempt++
		now := clk.Now()
		deadline, byCtx := now.Add(c.opts.Timeout), false
		if giveUp.Before(deadline) {
			deadline = giveUp
		}
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline, byCtx = d, true
		}
		a, err := c.t.roundTrip(ctx, method, path, body, deadline)
		var retryAfter time.Duration
		switch {
		case ctx.Err() != nil || (byCtx && isTimeout(err)):
			// The caller's deadline, not the node, ended the attempt.
			return unanswered || !neverSent(err), fmt.Errorf("%s: %s: %w", c.node, proc, ctxErr(ctx))
		case err != nil:
			unanswered = unanswered || !neverSent(err)
			final, retry := c.transportFailure(proc, err, deadline.Sub(now))
			if final != nil {
				return unanswered, final
			}
			lastErr = retry
		default:
			c.lastReply.Store(clk.Now().UnixNano())
			if a.status/100 == 2 {
				if out == nil {
					return unanswered, nil
				}
				if err := wantObject(a.body); err != nil {
					// Not a node's answer (anything else on its port): taken
					// as a zero record, an empty call ID would be waited on
					// for ever.
					return unanswered, fmt.Errorf("%s: %s: %w", c.node, proc,
						rpc.Errorf(rpc.KindProtocolError, "node answered HTTP %d %s", a.status, err))
				}
				// Strict syntax, but a newer node may add fields.
				if err := rpc.UnmarshalStrict(a.body, out, rpc.IgnoreUnknownFields); err != nil {
					return unanswered, fmt.Errorf("%s: %s: %w", c.node, proc,
						rpc.Errorf(rpc.KindProtocolError, "node answered HTTP %d with a malformed body: %v", a.status, err))
				}
				return unanswered, nil
			}
			rerr := errorOfAnswer(a)
			if rerr.Kind == rpc.KindTLSMismatch {
				return unanswered, &TLSMismatchError{Node: c.node, Procedure: proc, NodeServesTLS: c.opts.Insecure, Err: rerr}
			}
			if rerr.Kind == rpc.KindNotActive {
				return unanswered, &NotActiveError{Master: c.node, Procedure: proc, Active: a.activeMaster, Err: rerr}
			}
			if rerr.Kind != rpc.KindBusy {
				return unanswered, fmt.Errorf("%s: %s: %w", c.node, proc, rerr)
			}
			lastErr, retryAfter = rerr, a.retryAfter
		}

		elapsed := clk.Now().Sub(start)
		delay := max(pol.backoff(attempt, c.opts.randN), retryAfter)
		if attempt >= pol.MaxAttempts || !clk.Now().Add(delay).Before(giveUp) {
			return unanswered, c.gaveUp(proc, attempt, elapsed, lastErr)
		}
		c.log.Debug("retrying", "node", c.node, "procedure", proc, "attempt", attempt, "delay", delay, "err", lastErr)
		if err := clk.Sleep(ctx, delay); err != nil {
			return unanswered, fmt.Errorf("%s: %s: %w after %d attempts, the last: %s", c.node, proc, err, attempt, describeTransport(lastErr))
		}
	}
}

// errorOfAnswer is the error a node's answer of a status other than 2xx
// carries. noded answers a refused request 4xx or 5xx and nothing else,
// so any other status (101, a redirect, a status HTTP does not define)
// comes from something on the node's port that speaks another protocol,
// a proxy or a login page, say: a protocol error whatever its body holds,
// and no fault of the caller's. An error object whose kind is not one a
// request is answered with (rpc.Kind.AnswersRequests) is one too, quoting the
// node's kind and message: a caller tests kinds, and one it cannot test
// tells it nothing, nor can the client tell whether to retry it. Neither
// is retried: the node would answer the same again.
func errorOfAnswer(a answer) *rpc.Error {
	if a.status < 400 || a.status > 599 {
		body := "an empty body"
		if len(bytes.TrimSpace(a.body)) > 0 {
			body = fmt.Sprintf("%q", rpc.ClipBytes(a.body, 40))
		}
		return rpc.Errorf(rpc.KindProtocolError,
			"node answered HTTP %d, which no noderpc daemon sends (something on its port speaks another protocol), with %s", a.status, body)
	}
	rerr := rpc.DecodeErrorAnswer(a.status, a.body)
	if !rerr.Kind.AnswersRequests() {
		return rpc.Errorf(rpc.KindProtocolError,
			"node answered HTTP %d with the error kind %q, which is none of the protocol's request errors: %s", a.status, rpc.Clip(string(rerr.Kind), 40), rerr.Message)
	}
	return rerr
}

// wantObject says what is wrong with body as the answer of a procedure
// that answers a JSON object, or nil: every answer with a body is one,
// and an empty body or null would decode to a zero value.
func wantObject(body []byte) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return errors.New("with an empty body, want a JSON object")
	case trimmed[0] != '{':
		return fmt.Errorf("with %q, want a JSON object", rpc.ClipBytes(trimmed, 40))
	}
	return nil
}

// neverSent reports whether err, an attempt's failure, came before the
// request could leave: the connection to the node was refused, or not
// made in time. Such an attempt did nothing on the node.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &op) && op.Op == "dial")
}

// transportFailure sorts the failure of an attempt that waited up to
// waited: final, or worth another attempt.
func (c *Client) transportFailure(proc string, err error, waited time.Duration) (final, retry error) {
	var tooLarge *tooLargeAnswer
	switch {
	case errors.As(err, &tooLarge):
		// The same node would send the same answer again.
		return &AnswerTooLargeError{Node: c.node, Procedure: proc, Limit: tooLarge.limit, Declared: tooLarge.declared}, nil
	case isTimeout(err):
		// A node that trickles its answer is as unusable as a silent
		// one, and is retried and given up on alike.
		return nil, &noAnswerError{after: waited, err: err}
	}
	if cerr := certificateFailure(c.node, proc, err); cerr != nil {
		return cerr, nil
	}
	if plainHTTPAnswer(err) {
		return &TLSMismatchError{Node: c.node, Procedure: proc, Err: err}, nil
	}
	return nil, err
}

// gaveUp is the error of a procedure whose retry policy ran out.
func (c *Client) gaveUp(proc string, attempts int, elapsed time.Duration, last error) error {
	var rerr *rpc.Error
	if errors.As(last, &rerr) {
		// The node answered, but only "busy".
		return fmt.Errorf("%s: %s: %w (gave up after %d attempts over %s)", c.node, proc, rerr, attempts, roundDuration(elapsed))
	}
	return &UnreachableError{Node: c.node, Procedure: proc, Attempts: attempts, Elapsed: elapsed, Err: last}
}

// ctxErr is ctx's error, or DeadlineExceeded when the deadline has been
// reached by the clock but ctx has not noticed yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}
