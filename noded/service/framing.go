package service

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// FramingError is the error for a request head whose body framing two
// readers could take differently, or nil. fasthttp refuses a transfer
// coding it does not know, but drops "identity" and reads no body, and
// takes chunked over a Content-Length and keeps the connection: a proxy
// in front that frames the body the other way would see what follows as
// a request of the client's making (request smuggling). So noded and
// masterd take Transfer-Encoding only as exactly chunked (in any case,
// RFC 9112 §7) and never with a Content-Length (RFC 9112 §6.1 lets a
// server refuse it), reading the head as the client wrote it: fasthttp's
// parsed header has lost both. A server calls it from its HeaderReceived
// hook, so that no byte of such a body is read, and answers the request
// with the error and a closed connection.
func FramingError(h *fasthttp.RequestHeader) error {
	if !mentionsTransferEncoding(h.RawHeaders()) {
		return nil // every ordinary request, without a full scan
	}
	var te []byte
	var hasTE, hasLength bool
	for k, v := range h.AllInOrder() {
		switch {
		case bytes.EqualFold(k, []byte(fasthttp.HeaderTransferEncoding)):
			te, hasTE = v, true
		case bytes.EqualFold(k, []byte(fasthttp.HeaderContentLength)):
			hasLength = true
		}
	}
	switch {
	case !hasTE:
		return nil
	case !bytes.EqualFold(te, []byte("chunked")):
		return rpc.Errorf(rpc.KindBadRequest, "Transfer-Encoding %q: only chunked is taken, or a Content-Length", rpc.ClipBytes(te, 40))
	case hasLength:
		return rpc.Errorf(rpc.KindBadRequest, "a request with both Content-Length and Transfer-Encoding: send one of them")
	}
	return nil
}

// mentionsTransferEncoding reports whether raw, a request's header lines
// as the client wrote them, holds "transfer-encoding" in any case
// anywhere: a header fasthttp took for Transfer-Encoding is there
// whatever its case, and the test costs a few searches for "-".
func mentionsTransferEncoding(raw []byte) bool {
	const name = "transfer-encoding" // "-" at 8
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '-')
		if j < 0 {
			return false
		}
		dash := i + j
		if dash >= 8 && dash+9 <= len(raw) && bytes.EqualFold(raw[dash-8:dash+9], []byte(name)) {
			return true
		}
		i = dash + 1
	}
}
