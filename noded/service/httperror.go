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

// LateRequestError is the error of a request whose reading fasthttp
// stopped at its deadline. fasthttp keeps nothing of a head it could not
// finish, so a request with no raw header lines was late in its head:
// the error says so and names the likeliest cause besides a client that
// stalled, lines that end with a bare LF (SniffConn refuses those at
// once only in a connection's first head). Otherwise its body was late,
// and lateBody says within what.
func LateRequestError(h *fasthttp.RequestHeader, lateBody string) *rpc.Error {
	if len(h.RawHeaders()) == 0 {
		return rpc.Errorf(rpc.KindBadRequest, "the request head did not arrive within --head-timeout; "+
			"a head ends at an empty line, CRLF CRLF, which a client that ends its lines with a bare LF never sends (nc without -C, openssl s_client without -crlf)")
	}
	return rpc.Errorf(rpc.KindBadRequest, "%s", lateBody)
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
