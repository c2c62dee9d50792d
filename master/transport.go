package master

import (
	"context"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// answer is what a node answered one HTTP request with.
type answer struct {
	status int
	body   []byte
	// retryAfter is the Retry-After of a busy answer, 0 if none.
	retryAfter time.Duration
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
type httpTransport struct {
	hc *fasthttp.HostClient
	// tlsd makes the connections of a client with Options.TLS; nil with
	// Options.Insecure.
	tlsd *tlsDialer
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
		},
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
	resp := fasthttp.AcquireResponse()
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
		defer fasthttp.ReleaseResponse(resp)
		start := time.Now()
		if err := t.hc.DoDeadline(req, resp, deadline); err != nil {
			if t.tlsd != nil {
				if alert := t.tlsd.alertSince(start); alert != nil {
					return answer{}, alert
				}
			}
			return answer{}, err
		}
		a := answer{
			status: resp.StatusCode(),
			// The response is pooled; its body must be copied out.
			body: append([]byte(nil), resp.Body()...),
		}
		if v := resp.Header.Peek("Retry-After"); len(v) > 0 {
			if secs, err := strconv.Atoi(string(v)); err == nil && secs > 0 {
				a.retryAfter = time.Duration(secs) * time.Second
			}
		}
		return a, nil
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

func (t *httpTransport) closeIdle() { t.hc.CloseIdleConnections() }
