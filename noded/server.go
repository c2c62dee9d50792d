package noded

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/rpc"
)

// api serves the HTTP protocol of doc/protocol.md on top of a job table.
type api struct {
	table   *jobs.Table
	version rpc.VersionResponse
	log     *slog.Logger
	metrics *daemonMetrics
	// tls is true when noded serves HTTPS: every request then carries a
	// verified client certificate whose role is checked.
	tls bool
}

// handle routes one request. Procedures that change or wait on calls are
// PUT, as in Ganeti's protocol; reads are GET.
func (a *api) handle(ctx *fasthttp.RequestCtx) {
	if !a.authorize(ctx) {
		return
	}
	path := string(ctx.Path())
	switch path {
	case rpc.PathStartFunction:
		if a.method(ctx, fasthttp.MethodPut) {
			var req rpc.StartRequest
			if a.decode(ctx, &req) && a.valid(ctx, &req) {
				a.metrics.startsInFlight.Add(1)
				c, err := a.table.Start(ctx, startOptions(&req))
				a.metrics.startsInFlight.Add(-1)
				a.answer(ctx, c, err)
			}
		}
	case rpc.PathWaitForFunction:
		if a.method(ctx, fasthttp.MethodPut) {
			var req rpc.WaitRequest
			if a.decode(ctx, &req) && a.valid(ctx, &req) {
				a.metrics.waitsInFlight.Add(1)
				c, err := a.table.Wait(ctx, req.ID, jobs.WaitOptions{
					Timeout:   rpc.Duration(req.Timeout),
					LogOffset: req.LogOffset,
					WakeOnLog: req.WakeOnLog,
				})
				a.metrics.waitsInFlight.Add(-1)
				a.answer(ctx, c, err)
			}
		}
	case rpc.PathCancelFunction:
		if a.method(ctx, fasthttp.MethodPut) {
			var req rpc.CancelRequest
			if a.decode(ctx, &req) && a.valid(ctx, &req) {
				wait := rpc.DefaultCancelWait
				if req.Timeout != nil {
					wait = rpc.Duration(*req.Timeout)
				}
				c, err := a.table.Cancel(ctx, req.ID, wait)
				a.answer(ctx, c, err)
			}
		}
	case rpc.PathReleaseFunction:
		if a.method(ctx, fasthttp.MethodPut) {
			var req rpc.IDRequest
			if a.decode(ctx, &req) && a.valid(ctx, &req) {
				if err := a.table.Release(req.ID); err != nil {
					a.fail(ctx, err)
				} else {
					a.reply(ctx, rpc.ReleaseResponse{ID: req.ID, Released: true})
				}
			}
		}
	case rpc.PathListFunctions:
		if a.method(ctx, fasthttp.MethodGet) {
			a.reply(ctx, rpc.ListResponse{Calls: a.table.List()})
		}
	case rpc.PathVersion:
		if a.method(ctx, fasthttp.MethodGet) {
			a.reply(ctx, &a.version)
		}
	case PathMetrics:
		if a.method(ctx, fasthttp.MethodGet) {
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			a.metrics.write(ctx)
		}
	default:
		a.fail(ctx, rpc.Errorf(rpc.KindBadRequest, "no procedure %q; see doc/protocol.md", path))
	}
}

func (a *api) method(ctx *fasthttp.RequestCtx, want string) bool {
	if string(ctx.Method()) == want {
		return true
	}
	a.fail(ctx, rpc.Errorf(rpc.KindBadRequest, "%s %s: this procedure takes %s", ctx.Method(), ctx.Path(), want))
	return false
}

func (a *api) decode(ctx *fasthttp.RequestCtx, v any) bool {
	if err := rpc.Decode(ctx.PostBody(), v); err != nil {
		a.fail(ctx, err)
		return false
	}
	return true
}

func (a *api) valid(ctx *fasthttp.RequestCtx, v interface{ Validate() error }) bool {
	if err := v.Validate(); err != nil {
		a.fail(ctx, err)
		return false
	}
	return true
}

// startOptions converts a validated StartFunction body from the wire's
// seconds into what the table takes.
func startOptions(req *rpc.StartRequest) jobs.StartOptions {
	return jobs.StartOptions{
		Fn:         req.FnName,
		Args:       req.FnArgs,
		Timeout:    rpc.Duration(req.Timeout),
		AbortAfter: rpc.Duration(req.AbortAfter),
		RequestID:  req.RequestID,
		LogOffset:  req.LogOffset,
	}
}

func (a *api) answer(ctx *fasthttp.RequestCtx, c *rpc.Call, err error) {
	if err != nil {
		a.fail(ctx, err)
		return
	}
	a.reply(ctx, c)
}

func (a *api) reply(ctx *fasthttp.RequestCtx, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		a.fail(ctx, rpc.Errorf(rpc.KindInternal, "encoding the answer: %v", err))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// fail answers with the error's kind and status. An error that is not an
// *rpc.Error is a bug somewhere below and answers internal, logged.
func (a *api) fail(ctx *fasthttp.RequestCtx, err error) {
	var e *rpc.Error
	if !errors.As(err, &e) {
		a.log.Error("unexpected error serving a request", "path", string(ctx.Path()), "err", err)
		e = rpc.Errorf(rpc.KindInternal, "%v", err)
	}
	writeError(ctx, e)
}

// writeError writes e as the JSON error body with its status.
func writeError(ctx *fasthttp.RequestCtx, e *rpc.Error) {
	if e.Kind == rpc.KindBusy {
		// One second is about the time a short function takes here; the
		// client adds its own jitter.
		ctx.Response.Header.Set("Retry-After", "1")
	}
	body, _ := json.Marshal(rpc.ErrorResponse{Error: e}) // plain strings: cannot fail
	ctx.SetStatusCode(e.Kind.HTTPStatus())
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// serverError answers requests fasthttp refused before any handler ran,
// in the same JSON shape as every other error. A body over --max-request
// is refused from its declared length, before it is read.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	kind := rpc.KindBadRequest
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		kind = rpc.KindTooLarge
	case errors.As(err, &timeout) && timeout.Timeout():
		ctx.SetConnectionClose()
	}
	writeError(ctx, rpc.Errorf(kind, "%v", err))
}

// newServer returns the fasthttp server for a, hardened against clients
// that send slowly or too much. doc/security.md reviews each bound.
func newServer(a *api, cfg *Config, log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            a.handle,
		ErrorHandler:       serverError,
		Name:               "noded",
		MaxRequestBodySize: cfg.MaxRequest,
		// The read timeout covers the TLS handshake and one request's
		// headers and body; a client that trickles bytes (slow-loris) is
		// cut off.
		ReadTimeout: 30 * time.Second,
		// The write timeout starts when the answer is ready, so a long
		// wait does not count against it.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
		// The request line and headers must fit in the read buffer; a
		// larger head is refused (431) instead of growing memory.
		ReadBufferSize: 16 << 10,
		// The listener (admission.go) admits at most --max-conns
		// connections; fasthttp's own bound sits above it with room for
		// workers still ending, so it never refuses from the accept loop.
		Concurrency:     cfg.MaxConns + maxRefusing,
		Logger:          slogPrinter{log},
		CloseOnShutdown: true,
	}
}

// slogPrinter hands fasthttp's own log lines to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Warn("http server", "detail", fmt.Sprintf(format, args...))
}
