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
// memory: a request whose body would take it past the bound is answered
// busy, before the bytes that would cross it are read. Bodies take it as
// their bytes arrive (readBody), not from the length they declare.
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

// give gives back n bytes taken with tryTake.
func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// bodyStep is the body budget's unit: a body of at most bodyStep bytes
// is taken and allocated whole; a larger one, or one whose length is not
// known in advance (chunked), takes room bodyStep first and then twice
// what it holds each time that room is full.
const bodyStep = 64 << 10

// readBody reads the request's body through limit and the body budget. A
// declared length over the limit is refused before a byte is read; a
// chunked body the moment it crosses it. A declared length is only an
// upper bound until the bytes are there: past bodyStep, the body takes
// the budget as it arrives (readSteps), so that a client declaring a
// large body and sending little holds little. release gives the body's
// budget back; call it once the body is no longer used.
func (a *api) readBody(ctx *fasthttp.RequestCtx, limit int) (body []byte, release func(), err error) {
	stream := ctx.RequestBodyStream()
	n := ctx.Request.Header.ContentLength()
	switch {
	case stream == nil || n == 0 || n == -2: // -2: no body at all
		return nil, func() {}, nil
	case n > limit:
		return nil, nil, tooLarge(string(ctx.Path()), limit)
	case n < 0: // -1: chunked
		return a.readSteps(stream, -1, string(ctx.Path()), limit)
	case n > bodyStep:
		return a.readSteps(stream, n, string(ctx.Path()), limit)
	}
	// Every ordinary request: one take, one allocation.
	if !a.bodies.tryTake(int64(n)) {
		return nil, nil, busyBodies()
	}
	body = make([]byte, n)
	if m, err := io.ReadFull(stream, body); err != nil {
		a.bodies.give(int64(n))
		return nil, nil, bodyReadError(m, n, err)
	}
	return body, func() { a.bodies.give(int64(n)) }, nil
}

// readSteps reads a body as its bytes arrive: one of declared bytes, or,
// with declared negative, a chunked one up to limit. It takes the budget
// for the room it allocates, bodyStep first and then twice what it holds
// each time that room is full, never past the declared length or the
// limit: a body holds at most twice what its client has sent, or a step,
// and a declared body ends in an allocation of its exact length. A
// chunked body that fills its limit is read one byte further: a byte
// there is too much; its end there makes a body of exactly the limit.
func (a *api) readSteps(stream io.Reader, declared int, path string, limit int) (body []byte, release func(), err error) {
	bound := limit
	if declared >= 0 {
		bound = declared
	}
	var held int64
	fail := func(err error) ([]byte, func(), error) {
		a.bodies.give(held)
		return nil, nil, err
	}
	for {
		if len(body) == cap(body) {
			if len(body) == bound {
				if declared >= 0 {
					break
				}
				var more [1]byte
				m, rerr := io.ReadFull(stream, more[:])
				if m > 0 {
					return fail(tooLarge(path, limit))
				}
				if !errors.Is(rerr, io.EOF) {
					return fail(bodyReadError(0, -1, rerr))
				}
				break
			}
			room := min(max(2*cap(body), bodyStep), bound)
			if !a.bodies.tryTake(int64(room - cap(body))) {
				return fail(busyBodies())
			}
			held += int64(room - cap(body))
			body = append(make([]byte, 0, room), body...)
		}
		m, rerr := stream.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if rerr == nil {
			continue
		}
		if errors.Is(rerr, io.EOF) && (declared < 0 || len(body) == declared) {
			break
		}
		return fail(bodyReadError(len(body), declared, rerr))
	}
	return body, func() { a.bodies.give(held) }, nil
}

// bodyReadError is the error for a body whose reading failed after got
// bytes of the declared (negative: chunked): one that ended before its
// declared length says so, as fasthttp's stream reports that end as the
// body's.
func bodyReadError(got, declared int, err error) error {
	if declared >= 0 && got < declared && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return rpc.Errorf(rpc.KindBadRequest, "the request body ended after %d of the %d bytes its Content-Length declares", got, declared)
	}
	return rpc.Errorf(rpc.KindBadRequest, "reading the request body: %v", err)
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
