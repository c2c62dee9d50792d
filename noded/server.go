package noded

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/noded/functions"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// api serves the HTTP protocol of doc/protocol.md on top of a job table.
type api struct {
	table *jobs.Table
	// functions is the table's resolver, which also lists the functions.
	functions *functions.Resolver
	version   rpc.VersionResponse
	log       *slog.Logger
	metrics   *daemonMetrics
	// tls is true when noded serves HTTPS: every request then carries a
	// verified client certificate whose role is checked.
	tls bool
	// bodies bounds the request bodies read and held at once.
	bodies *budget
	// maxRequest is --max-request, the largest body one request may have.
	maxRequest int
	// hangups ends the wait of a request whose client hung up.
	hangups *hangups
}

// procedure is one entry of the protocol: how it is called and who may
// call it. Procedures that change or wait on calls are PUT, as in
// Ganeti's protocol, and take a JSON body; reads are GET.
type procedure struct {
	method string
	// read is true for the procedures an observer may call: they have no
	// side effect.
	read bool
	// bigBody is true for the one procedure whose body may be as large
	// as --max-request (StartFunction, for its fn_args); every other body
	// is an ID and a few numbers, bounded by smallBody.
	bigBody bool
	serve   func(a *api, ctx *fasthttp.RequestCtx, body []byte)
}

// smallBody bounds the body of every procedure but StartFunction: an ID
// and a few numbers. It keeps an observer, who may call WaitForFunction,
// from holding --max-request-memory with bodies it declares and never
// sends.
const smallBody = 64 << 10

// procedures are what noded serves, by path.
var procedures = map[string]procedure{
	rpc.PathStartFunction:   {fasthttp.MethodPut, false, true, (*api).startFunction},
	rpc.PathWaitForFunction: {fasthttp.MethodPut, true, false, (*api).waitForFunction},
	rpc.PathCancelFunction:  {fasthttp.MethodPut, false, false, (*api).cancelFunction},
	rpc.PathReleaseFunction: {fasthttp.MethodPut, false, false, (*api).releaseFunction},
	rpc.PathListFunctions:   {fasthttp.MethodGet, true, false, (*api).listFunctions},
	rpc.PathListCalls:       {fasthttp.MethodGet, true, false, (*api).listCalls},
	rpc.PathVersion:         {fasthttp.MethodGet, true, false, (*api).versionInfo},
	PathMetrics:             {fasthttp.MethodGet, true, false, (*api).metricsText},
}

// refusedHeader carries, from headerReceived to handle, why a request is
// refused from its head alone. It is noded's own: one a client sends is
// dropped.
const refusedHeader = "X-Noded-Refused"

// headerReceived runs once a request's head is in, before fasthttp reads
// any of its body. A request that will be refused from its head (a body
// framed in a way two readers could read differently, no such procedure
// as written, the wrong method, a declared body over its limit) gets its
// body length set to 0, so that fasthttp does not wait for a byte of the
// body; handle then refuses it and closes the connection, so the unread
// body is never taken for the next request.
func (a *api) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(refusedHeader)
	// The path as the client wrote it: handle routes on the decoded
	// path, and a path written otherwise (escapes, "//") is refused.
	path, _, _ := bytes.Cut(h.RequestURI(), []byte("?"))
	p, ok := procedures[string(path)]
	n := h.ContentLength()
	var why string
	switch {
	case service.FramingError(h) != nil:
		why = "framing"
	case !ok || string(h.Method()) != p.method:
		why = "route"
	case n > a.bodyLimit(p):
		why = "too_large"
	case p.method == fasthttp.MethodGet && n != 0 && n != -2:
		why = "get_body"
	}
	if why != "" {
		h.Set(refusedHeader, why)
		h.SetContentLength(0)
	}
	return fasthttp.RequestConfig{ReadTimeout: bodyTimeout}
}

// bodyLimit is the largest body procedure p takes.
func (a *api) bodyLimit(p procedure) int {
	if p.bigBody {
		return a.maxRequest
	}
	return smallBody
}

// handle admits one request from its head alone (path, method, role),
// and only then reads its body, within its limit and the memory budget.
// A panic below it answers internal and leaves noded serving.
func (a *api) handle(ctx *fasthttp.RequestCtx) {
	defer service.RecoverPanic(ctx, a.log, "noded")
	path := string(ctx.Path())
	p, ok := procedures[path]
	refused := string(ctx.Request.Header.Peek(refusedHeader))
	switch {
	case refused == "framing":
		a.refuse(ctx, service.FramingError(&ctx.Request.Header))
		return
	case !ok:
		a.refuse(ctx, rpc.Errorf(rpc.KindBadRequest, "no procedure %q; see doc/protocol.md", path))
		return
	case string(ctx.Method()) != p.method:
		a.refuse(ctx, rpc.Errorf(rpc.KindBadRequest, "%s %s: this procedure takes %s", ctx.Method(), path, p.method))
		return
	case refused == "route":
		a.refuse(ctx, rpc.Errorf(rpc.KindBadRequest, "no procedure %q: write the path as %s, without escapes", ctx.Request.Header.RequestURI(), path))
		return
	}
	if err := a.authorize(ctx, path); err != nil {
		a.refuse(ctx, err)
		return
	}
	switch refused {
	case "too_large":
		a.refuse(ctx, tooLarge(path, a.bodyLimit(p)))
		return
	case "get_body":
		a.refuse(ctx, rpc.Errorf(rpc.KindBadRequest, "GET %s takes no body", path))
		return
	}
	var body []byte
	if p.method == fasthttp.MethodPut {
		var release func()
		var err error
		if body, release, err = a.readBody(ctx, a.bodyLimit(p)); err != nil {
			a.refuse(ctx, err)
			return
		}
		defer release()
	}
	p.serve(a, ctx, body)
}

func (a *api) startFunction(ctx *fasthttp.RequestCtx, body []byte) {
	var req rpc.StartRequest
	if !a.decode(ctx, body, &req) {
		return
	}
	// Before the start, so that a start refused busy still frees what
	// its client is done with.
	a.releaseAll(req.Release)
	a.waitFor(ctx, req.Timeout, &a.metrics.startsInFlight, func(wctx context.Context) (*rpc.Call, error) {
		return a.table.Start(wctx, jobs.StartOptions{
			Fn:         req.FnName,
			Args:       req.FnArgs,
			Timeout:    rpc.Duration(req.Timeout),
			AbortAfter: rpc.Duration(req.AbortAfter),
			RequestID:  req.RequestID,
			LogOffset:  req.LogOffset,
			WakeOnLog:  req.WakeOnLog,
		})
	})
}

func (a *api) waitForFunction(ctx *fasthttp.RequestCtx, body []byte) {
	var req rpc.WaitRequest
	if !a.decode(ctx, body, &req) {
		return
	}
	a.waitFor(ctx, req.Timeout, &a.metrics.waitsInFlight, func(wctx context.Context) (*rpc.Call, error) {
		return a.table.Wait(wctx, req.ID, jobs.WaitOptions{
			Timeout:   rpc.Duration(req.Timeout),
			LogOffset: req.LogOffset,
			WakeOnLog: req.WakeOnLog,
		})
	})
}

// waitFor answers the record of do, a start or a wait that may block up
// to timeout seconds, counted in inFlight while it runs, in a context
// that ends if the client hangs up.
func (a *api) waitFor(ctx *fasthttp.RequestCtx, timeout float64, inFlight *atomic.Int64, do func(context.Context) (*rpc.Call, error)) {
	wctx, done := a.watchHangup(ctx, timeout)
	defer done()
	inFlight.Add(1)
	c, err := do(wctx)
	inFlight.Add(-1)
	a.answer(ctx, c, err)
}

func (a *api) cancelFunction(ctx *fasthttp.RequestCtx, body []byte) {
	var req rpc.CancelRequest
	if !a.decode(ctx, body, &req) {
		return
	}
	wait := rpc.DefaultCancelWait
	if req.Timeout != nil {
		wait = rpc.Duration(*req.Timeout)
	}
	wctx, done := a.watchHangup(ctx, wait.Seconds())
	defer done()
	c, err := a.table.Cancel(wctx, req.ID, wait)
	a.answer(ctx, c, err)
}

func (a *api) releaseFunction(ctx *fasthttp.RequestCtx, body []byte) {
	var req rpc.IDRequest
	if !a.decode(ctx, body, &req) {
		return
	}
	if err := a.table.Release(req.ID); err != nil {
		a.fail(ctx, err)
		return
	}
	a.reply(ctx, rpc.ReleaseResponse{ID: req.ID, Released: true})
}

// releaseAll releases the calls of a start's release field one by one,
// each as ReleaseFunction does, counted the same. The start goes on
// whatever they meet: an ID no longer held (released already, expired,
// an earlier daemon's) is the release a client's retry repeats, and a
// call still running is a client's bug, kept and logged, that is no
// reason to refuse the call it asked for.
func (a *api) releaseAll(ids []string) {
	for _, id := range ids {
		err := a.table.Release(id)
		// The IDs are well-formed (Validate): bad_request is a call
		// that still runs.
		if rpc.KindOf(err) == rpc.KindBadRequest {
			a.log.Warn("a start asked to release a call that is still running; it is kept", "call_id", id)
		}
	}
}

// listFunctions answers the functions of the node. Observers may read
// it: it tells names and file problems, which the error of a start
// already tells anyone who tries one, and nothing of any call.
func (a *api) listFunctions(ctx *fasthttp.RequestCtx, _ []byte) {
	fns := a.functions.List()
	if fns == nil {
		fns = []rpc.Function{}
	}
	a.reply(ctx, rpc.ListFunctionsResponse{Functions: fns, FunctionsDir: a.functions.Dir, Calls: rpc.CallsMoved})
}

func (a *api) listCalls(ctx *fasthttp.RequestCtx, _ []byte) {
	a.reply(ctx, rpc.ListCallsResponse{Calls: a.table.List()})
}

func (a *api) versionInfo(ctx *fasthttp.RequestCtx, _ []byte) {
	a.reply(ctx, &a.version)
}

func (a *api) metricsText(ctx *fasthttp.RequestCtx, _ []byte) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	a.metrics.write(ctx)
}

// watchHangup returns the context a request waits in: it ends when the
// client closes its connection. A request that does not wait needs no
// watch. The RequestCtx itself is not used as a context: fasthttp does
// not cancel it on a hang-up, and its Done races with the server's
// shutdown.
func (a *api) watchHangup(ctx *fasthttp.RequestCtx, timeout float64) (context.Context, func()) {
	if timeout <= 0 || a.hangups == nil {
		return context.Background(), func() {}
	}
	return a.hangups.watch(context.Background(), ctx.Conn())
}

// decode decodes a request body strictly and validates its values.
func (a *api) decode(ctx *fasthttp.RequestCtx, body []byte, v interface{ Validate() error }) bool {
	err := rpc.Decode(body, v)
	if err == nil {
		err = v.Validate()
	}
	if err != nil {
		a.fail(ctx, err)
		return false
	}
	return true
}

func (a *api) answer(ctx *fasthttp.RequestCtx, c *rpc.Call, err error) {
	if err != nil {
		a.fail(ctx, err)
		return
	}
	a.reply(ctx, c)
}

func (a *api) reply(ctx *fasthttp.RequestCtx, v any) {
	body, err := rpc.Marshal(v)
	if err != nil {
		a.fail(ctx, rpc.Errorf(rpc.KindInternal, "encoding the answer: %v", err))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// refuse answers a request refused before its body was read, and closes
// the connection: what is left of the body must not be read as the next
// request.
func (a *api) refuse(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	a.fail(ctx, err)
}

// fail answers with the error's kind and status. An error that is not an
// *rpc.Error is a bug somewhere below and answers internal, logged.
func (a *api) fail(ctx *fasthttp.RequestCtx, err error) {
	var e *rpc.Error
	if !errors.As(err, &e) {
		a.log.Error("unexpected error serving a request", "path", string(ctx.Path()), "err", err)
		e = rpc.Errorf(rpc.KindInternal, "%v", err)
	}
	service.WriteError(ctx, e)
}

// serverError answers requests fasthttp refused before any handler ran
// (a request head that is malformed, too large, or too slow, or the
// first 8 KiB of a body too slow), in the same JSON shape as every other
// error, and closes the connection.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &small):
		ctx.SetStatusCode(fasthttp.StatusRequestHeaderFieldsTooLarge)
		body, _ := rpc.Marshal(rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindTooLarge,
			"the request head (request line and headers) is larger than the %d bytes noded reads", headBufferSize)})
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
		return
	case errors.As(err, &timeout) && timeout.Timeout():
		// fasthttp reads up to 8 KiB of a body before the handler.
		service.WriteError(ctx, service.LateRequestError(&ctx.Request.Header, "the request body did not arrive within "+bodyTimeout.String()))
		return
	}
	service.WriteError(ctx, rpc.Errorf(rpc.KindBadRequest, "malformed HTTP request: %s", rpc.Clip(err.Error(), 200)))
}

// headBufferSize bounds a request's line and headers: a larger head is
// refused (431) instead of growing memory.
const headBufferSize = 16 << 10

// newServer returns the fasthttp server for a, hardened against clients
// that send slowly or too much. doc/security.md reviews each bound.
func newServer(a *api, cfg *Config, adm *admission, log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      a.handle,
		ErrorHandler: serverError,
		Name:         "noded",
		// Bodies are read by the handler, after it has authorised the
		// request from its head, through --max-request and the budget;
		// fasthttp would otherwise read a multipart body whole first,
		// into memory and temporary files, whoever sent it.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// The read timeout covers the TLS handshake and the request head;
		// once the head is in, the body gets bodyTimeout of its own.
		ReadTimeout:    cfg.HeadTimeout,
		HeaderReceived: a.headerReceived,
		// The write timeout starts when the answer is ready, so a long
		// wait does not count against it.
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		ReadBufferSize: headBufferSize,
		// The listener (admission.go) admits at most --max-conns
		// connections; fasthttp's own bound sits above it with room for
		// workers still ending, so it never refuses from the accept loop.
		Concurrency:     cfg.MaxConns + maxPending,
		ConnState:       adm.connState,
		Logger:          service.SlogPrinter{Log: log},
		CloseOnShutdown: true,
		// A malformed head is logged without the bytes that came: they
		// are the client's, often binary, and up to headBufferSize long.
		SecureErrorLogMessage: true,
	}
}

// bodyTimeout bounds the reading of one request body once its head is in:
// --max-request (64 MiB by default) at well under 10 MB/s.
const bodyTimeout = 30 * time.Second
