package noded

import (
	"errors"
	"io"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// budget bounds the bytes of request bodies held at once across every
// request, so that many large bodies in parallel cannot take noded's
// memory: past it a request is answered busy before its body is read.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// tryTake takes n bytes of the budget, or reports that they are not
// there.
func (b *budget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// bodyStep is how much of the budget a chunked body, whose length is not
// known in advance, takes at a time.
const bodyStep = 64 << 10

// readBody reads the request's body through limit and the body budget. A
// declared length over the limit is refused before a byte is read; a
// chunked body the moment it crosses it. release gives the body's budget
// back; call it once the body is no longer used.
func (a *api) readBody(ctx *fasthttp.RequestCtx, limit int) (body []byte, release func(), err error) {
	stream := ctx.RequestBodyStream()
	n := ctx.Request.Header.ContentLength()
	switch {
	case stream == nil || n == 0 || n == -2: // -2: no body at all
		return nil, func() {}, nil
	case n > limit:
		return nil, nil, tooLarge(string(ctx.Path()), limit)
	case n > 0:
		if !a.bodies.tryTake(int64(n)) {
			return nil, nil, busyBodies()
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(stream, body); err != nil {
			a.bodies.give(int64(n))
			return nil, nil, rpc.Errorf(rpc.KindBadRequest, "reading the request body: %v", err)
		}
		return body, func() { a.bodies.give(int64(n)) }, nil
	}
	return a.readChunked(stream, string(ctx.Path()), limit)
}

// readChunked reads a body of unknown length, taking the budget a step at
// a time.
func (a *api) readChunked(stream io.Reader, path string, limit int) (body []byte, release func(), err error) {
	var held int64
	giveBack := func() { a.bodies.give(held) }
	for {
		if len(body) > limit {
			giveBack()
			return nil, nil, tooLarge(path, limit)
		}
		if int64(len(body)) == held {
			if !a.bodies.tryTake(bodyStep) {
				giveBack()
				return nil, nil, busyBodies()
			}
			held += bodyStep
			body = append(body, make([]byte, bodyStep)...)[:len(body)]
		}
		m, rerr := stream.Read(body[len(body):held])
		body = body[:len(body)+m]
		if errors.Is(rerr, io.EOF) && len(body) <= limit {
			return body, giveBack, nil
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			giveBack()
			return nil, nil, rpc.Errorf(rpc.KindBadRequest, "reading the request body: %v", rerr)
		}
	}
}

// tooLarge is the error for a body over its path's limit, saying what
// sets the limit: --max-request for StartFunction, whose fn_args may be
// large; a fixed bound for the others, whose bodies are a few fields.
func tooLarge(path string, limit int) error {
	if path == rpc.PathStartFunction {
		return rpc.Errorf(rpc.KindTooLarge, "the request body is larger than %d bytes, noded's --max-request "+
			"(max-request in its configuration file): send smaller fn_args, or raise the limit on the node", limit)
	}
	return rpc.Errorf(rpc.KindTooLarge, "the body of %s is larger than %d bytes, a fixed bound of noded "+
		"(only StartFunction's, --max-request, can be raised)", path, limit)
}

func busyBodies() error {
	return rpc.Errorf(rpc.KindBusy, "noded holds as many request bodies as --max-request-memory allows; retry later")
}
