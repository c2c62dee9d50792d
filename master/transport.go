package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// answer is what a node answered one HTTP request with.
type answer struct {
	status int
	body   []byte
	// retryAfter is the Retry-After of a busy answer, 0 if none.
	retryAfter time.Duration
	// activeMaster is the rpc.HeaderActiveMaster of a standby masterd's
	// not_active answer: the URL of the active master, "" if none.
	activeMaster string
}

// transport sends one HTTP request to one node and returns its answer, or
// the transport failure. It is the seam between the retry logic and the
// network, so the retry logic is tested with a fake.
type transport interface {
	roundTrip(ctx context.Context, method, path string, body []byte, deadline time.Time) (answer, error)
	closeIdle()
}

var _ transport = (*httpTransport)(nil)

// httpTransport is one fasthttp.HostClient per node: keep-alive
// connections, and no goroutine at all once the node has been idle for
// MaxIdleConnDuration (fasthttp's cleaner stops when it has no connection
// left to watch).
//
// Every answer is read within two bounds. Its size: the body is streamed
// (StreamResponseBody) and read by readBody, which never holds more than
// maxAnswer bytes of it; fasthttp's own MaxResponseBodySize would grow
// its buffer by doubling, to twice the limit. Its time: fasthttp sets
// the connection's read deadline once per request, before the status
// line, to the request's deadline, and nothing moves it while the head
// and the body are read, so the deadline bounds the whole answer, not
// each read; a node that trickles its answer a byte at a time is cut off
// at the deadline as a silent one is (TestTricklingNodeIsCutOffAtDeadline
// holds fasthttp to it).
type httpTransport struct {
	hc *fasthttp.HostClient
	// tlsd makes the connections of a client with Options.TLS; nil with
	// Options.Insecure.
	tlsd *tlsDialer
	// maxAnswer bounds the body of an answer, in bytes.
	maxAnswer int64
}

func newHTTPTransport(node string, opts *Options) *httpTransport {
	t := &httpTransport{
		hc: &fasthttp.HostClient{
			Addr:                node,
			Name:                "noderpc-master",
			MaxConns:            opts.MaxConns,
			MaxIdleConnDuration: opts.IdleTimeout,
			// Every request carries its own deadline; these are
			// backstops for a deadline-less request, which we never send.
			ReadTimeout:  opts.Timeout,
			WriteTimeout: opts.Timeout,
			// The client's retry policy is the only place retries happen,
			// so that attempts are counted and backed off in one place.
			MaxIdemponentCallAttempts: 1,
			// A node may be named by an IPv6 address ("[::1]:1811");
			// fasthttp's dialer otherwise resolves to IPv4 only.
			DialDualStack: true,
			// readBody reads the body, within maxAnswer.
			StreamResponseBody: true,
		},
		maxAnswer: opts.MaxAnswer,
	}
	if opts.TLS != nil {
		t.tlsd = &tlsDialer{cfg: nodeTLSConfig(opts.TLS, node), fallback: opts.Timeout}
		t.hc.DialTimeout = t.tlsd.dial
	}
	return t
}

// roundTrip sends the request and waits for its answer until deadline or
// until ctx ends, whichever is first. fasthttp has no context, so when ctx
// can end the request runs in its own goroutine and an abandoned one
// finishes by itself at the latest at deadline.
func (t *httpTransport) roundTrip(ctx context.Context, method, path string, body []byte, deadline time.Time) (answer, error) {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(method)
	// Always http: with TLS the connection tlsd made is already
	// encrypted, and fasthttp must not add TLS of its own.
	req.SetRequestURI("http://" + t.hc.Addr + path)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBody(body)
	}
	do := func() (answer, error) {
		defer fasthttp.ReleaseRequest(req)
		return t.do(req, deadline)
	}
	if ctx.Done() == nil {
		return do()
	}
	type outcome struct {
		a   answer
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		a, err := do()
		done <- outcome{a, err}
	}()
	select {
	case o := <-done:
		return o.a, o.err
	case <-ctx.Done():
		return answer{}, ctx.Err()
	}
}

// do sends req and reads the whole answer by deadline.
func (t *httpTransport) do(req *fasthttp.Request, deadline time.Time) (answer, error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	start := time.Now()
	if err := t.hc.DoDeadline(req, resp, deadline); err != nil {
		if t.tlsd != nil {
			if alert := t.tlsd.alertSince(start); alert != nil {
				return answer{}, alert
			}
		}
		if isTimeout(err) && !errors.Is(err, fasthttp.ErrTimeout) {
			// fasthttp's ErrTimeout means no byte of the head came;
			// a timeout of its own making means some did.
			return answer{}, &partialAnswer{err: err}
		}
		return answer{}, err
	}
	a := answer{status: resp.StatusCode()}
	if bodiless(a.status) {
		// fasthttp reads no body after such a status and has already
		// pooled the connection, with whatever the node sent behind
		// the head still to come: the next request on it would read
		// that as its answer. No noderpc daemon sends these statuses,
		// so closing the node's idle connections costs a working node
		// nothing. (A request of this client that took the connection
		// in the meantime can still read them: what it reads is then
		// that same node's doing.)
		t.hc.CloseIdleConnections()
	}
	body, err := readBody(resp.BodyStream(), resp.Header.ContentLength(), t.maxAnswer)
	// Closing a stream that was not read to its end closes the
	// connection: after an answer over the limit, or cut short, the
	// rest of it must not be read as the next answer.
	resp.CloseBodyStream()
	if err != nil {
		var partial *partialAnswer
		if errors.As(err, &partial) {
			partial.status = a.status
		}
		return answer{}, err
	}
	a.body = body
	a.activeMaster = string(resp.Header.Peek(rpc.HeaderActiveMaster))
	if v := resp.Header.Peek("Retry-After"); len(v) > 0 {
		if secs, err := strconv.Atoi(string(v)); err == nil && secs > 0 {
			a.retryAfter = time.Duration(secs) * time.Second
		}
	}
	return a, nil
}

func (t *httpTransport) closeIdle() { t.hc.CloseIdleConnections() }

// bodiless reports whether an answer of status has no body by HTTP's
// rules (1xx, 204, 304), so that fasthttp reads none.
func bodiless(status int) bool {
	return status < 200 || status == 204 || status == 304
}

// readBody reads the body of an answer from stream, which holds declared
// bytes (fasthttp's ContentLength: -1 for a chunked body, -2 for one
// that ends when the connection does), and never more than limit bytes
// of it. A declared length over limit fails before a byte is read; a
// body of unknown length fails once it has sent limit+1 bytes. A nil
// stream is an answer without a body.
func readBody(stream io.Reader, declared int, limit int64) ([]byte, error) {
	if stream == nil {
		return nil, nil
	}
	if int64(declared) > limit {
		return nil, &tooLargeAnswer{limit: limit, declared: int64(declared)}
	}
	if declared >= 0 {
		// noded always declares its length: one buffer of exactly it.
		b := make([]byte, declared)
		if n, err := io.ReadFull(stream, b); err != nil {
			return nil, cutShort(err, int64(n), int64(declared))
		}
		// Reading on to the end lets the connection be reused.
		if _, err := stream.Read(make([]byte, 1)); err != nil && err != io.EOF {
			return nil, cutShort(err, int64(declared), int64(declared))
		}
		return b, nil
	}
	return readUnknownLength(stream, limit)
}

// bodyBlock is the most a body of unknown length grows by at once. Its
// blocks are joined once the body has ended, so an answer over the limit
// costs the limit and no more, with no doubling on the way.
const bodyBlock = 1 << 20

// readUnknownLength reads a body whose length was not declared, in
// blocks, and at most limit+1 bytes of it.
func readUnknownLength(stream io.Reader, limit int64) ([]byte, error) {
	var (
		full  [][]byte // the blocks filled
		cur   []byte   // the block being filled
		total int64
		next  = int64(4 << 10)
	)
	for {
		if len(cur) == cap(cur) {
			if total > limit {
				return nil, &tooLargeAnswer{limit: limit, declared: -1}
			}
			if cur != nil {
				full = append(full, cur)
			}
			cur = make([]byte, 0, min(next, limit+1-total))
			next = min(2*next, bodyBlock)
		}
		n, err := stream.Read(cur[len(cur):cap(cur)])
		cur = cur[:len(cur)+n]
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, cutShort(err, total, -1)
		}
	}
	if total > limit {
		return nil, &tooLargeAnswer{limit: limit, declared: -1}
	}
	body := make([]byte, 0, total)
	for _, b := range append(full, cur) {
		body = append(body, b...)
	}
	return body, nil
}

// cutShort is the error of a body that stopped after got of its declared
// bytes (-1: not declared).
func cutShort(err error, got, declared int64) error {
	if isTimeout(err) {
		return &partialAnswer{bodyRead: got, declared: declared, inBody: true, err: err}
	}
	return fmt.Errorf("the answer's body broke off after %d bytes: %w", got, err)
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// tooLargeAnswer is an answer whose body is over the transport's limit;
// invoke turns it into an [AnswerTooLargeError].
type tooLargeAnswer struct {
	limit    int64
	declared int64 // -1: not declared; limit+1 bytes were read
}

func (e *tooLargeAnswer) Error() string {
	if e.declared >= 0 {
		return fmt.Sprintf("the node declared an answer of %d bytes, over the client's limit of %d (Options.MaxAnswer)", e.declared, e.limit)
	}
	return fmt.Sprintf("the node sent an answer of more than %d bytes, the client's limit (Options.MaxAnswer)", e.limit)
}

// partialAnswer is an answer that had begun but was not whole at the
// deadline: its head, or its body, came too slowly.
type partialAnswer struct {
	inBody   bool  // the head was read, the body was not finished
	status   int   // the head's status, when inBody
	bodyRead int64 // body bytes read, when inBody
	declared int64 // the body's declared length, -1 if not declared
	err      error
}

func (e *partialAnswer) Error() string {
	switch {
	case !e.inBody:
		return "it sent only part of its answer's status line and headers"
	case e.declared >= 0:
		return fmt.Sprintf("it sent HTTP %d and only %d of its %d body bytes", e.status, e.bodyRead, e.declared)
	}
	return fmt.Sprintf("it sent HTTP %d and %d body bytes without ending the body", e.status, e.bodyRead)
}

func (e *partialAnswer) Unwrap() error { return e.err }
