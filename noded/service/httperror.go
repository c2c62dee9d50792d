package service

import (
	"fmt"
	"log/slog"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// WriteError answers e as the JSON error body every daemon sends, with
// its kind's status. A busy answer also says Retry-After: 1, about the
// time a short function takes; the client adds its own jitter.
func WriteError(ctx *fasthttp.RequestCtx, e *rpc.Error) {
	if e.Kind == rpc.KindBusy {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	body, _ := rpc.Marshal(rpc.ErrorResponse{Error: e}) // plain strings: cannot fail
	ctx.SetStatusCode(e.Kind.HTTPStatus())
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// SlogPrinter hands fasthttp's own log lines to slog, as WARN lines of
// "http server" whose detail is cut to maxDetail bytes: what a client
// sent must not make a daemon write long lines.
type SlogPrinter struct{ Log *slog.Logger }

// Printf logs one line.
func (p SlogPrinter) Printf(format string, args ...any) {
	p.Log.Warn("http server", "detail", rpc.Clip(fmt.Sprintf(format, args...), maxDetail))
}

// maxDetail bounds the detail of a line fasthttp logs.
const maxDetail = 300
