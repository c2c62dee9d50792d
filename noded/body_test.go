package noded

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// bodyServer serves, on loopback until the test ends, a handler that
// reads each request's body through readBody with limit and a budget of
// memory bytes, and answers 200 with the body's length, or the error.
// The api it returns shows the budget.
func bodyServer(t *testing.T, memory int64, limit int) (*api, string) {
	t.Helper()
	a := &api{bodies: &budget{max: memory}, log: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			body, release, err := a.readBody(ctx, limit)
			if err != nil {
				a.refuse(ctx, err)
				return
			}
			defer release()
			ctx.SetBodyString(strconv.Itoa(len(body)))
		},
		StreamRequestBody: true,
		ReadTimeout:       20 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown()
		if err := <-done; err != nil {
			t.Errorf("serving the body test server: %v", err)
		}
	})
	return a, ln.Addr().String()
}

// held is how much of a's body budget is taken.
func (a *api) held() int64 {
	a.bodies.mu.Lock()
	defer a.bodies.mu.Unlock()
	return a.bodies.used
}

// awaitHeld waits up to 10s for a's budget to hold want bytes, and fails
// the test saying what came about, and why it was expected, if it does not.
func awaitHeld(t *testing.T, a *api, want int64, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.held() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the body budget holds %d bytes after 10s, want %d", why, a.held(), want)
		}
		time.Sleep(time.Millisecond) // polling: the budget has no signal of its own
	}
}

// putBody sends a PUT with a Content-Length of declared and the first
// len(sent) bytes of its body over a connection of its own, closed when
// the test ends.
func putBody(t *testing.T, addr string, declared int, sent []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", rpc.PathStartFunction, declared, sent); err != nil {
		t.Fatal(err)
	}
	return c
}

// bodyAnswer reads one answer from c: its status and its body, or the
// message of its error.
func bodyAnswer(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	status, e, body := nodetest.ReadAnswerBody(t, c, 20*time.Second)
	if e != nil {
		return status, string(e.Kind) + ": " + e.Message
	}
	return status, string(body)
}

// TestDeclaredLengthIsAnUpperBound: a declared body length is charged to
// the body budget only as the bytes arrive. Clients that declare the
// largest body and send a few kilobytes hold a step of the budget each,
// not the whole of it, so another client's small body is served; a body
// that ends short is a bad request; and every byte taken comes back.
func TestDeclaredLengthIsAnUpperBound(t *testing.T) {
	const limit = 1 << 20
	a, addr := bodyServer(t, limit, limit)
	sent := []byte(strings.Repeat("x", 9000))
	var stalled []net.Conn
	for range 3 {
		stalled = append(stalled, putBody(t, addr, limit, sent))
	}
	awaitHeld(t, a, 3*bodyStep, fmt.Sprintf("3 clients declared %d bytes and sent %d each", limit, len(sent)))

	small := `{"fn_name":"echo","timeout":1}`
	if status, got := bodyAnswer(t, putBody(t, addr, len(small), []byte(small))); status != http.StatusOK || got != strconv.Itoa(len(small)) {
		t.Errorf("a %d-byte body while 3 clients stall on declared %d-byte ones: %d %s, want 200 %d", len(small), limit, status, got, len(small))
	}

	// One client ends its body short: a bad request.
	stalled[0].(*net.TCPConn).CloseWrite()
	if status, got := bodyAnswer(t, stalled[0]); status != http.StatusBadRequest || !strings.Contains(got, "bad_request: ") || !strings.Contains(got, fmt.Sprintf("%d", limit)) {
		t.Errorf("a body that ended after %d of its declared %d bytes: %d %q, want 400 bad_request naming the declared length", len(sent), limit, status, got)
	}
	// Another hangs up; the third sends the rest of its body.
	stalled[1].Close()
	if _, err := stalled[2].Write([]byte(strings.Repeat("y", limit-len(sent)))); err != nil {
		t.Fatal(err)
	}
	if status, got := bodyAnswer(t, stalled[2]); status != http.StatusOK || got != strconv.Itoa(limit) {
		t.Errorf("a declared %d-byte body sent in full while others stalled: %d %s, want 200 %d", limit, status, got, limit)
	}
	awaitHeld(t, a, 0, "every body read, ended short, or hung up")

	// The whole budget is there again: a body as large as all of it,
	// declared or chunked, and one at the fast path's bound.
	whole := strings.Repeat("z", limit)
	if status, got := bodyAnswer(t, putBody(t, addr, limit, []byte(whole))); status != http.StatusOK || got != strconv.Itoa(limit) {
		t.Errorf("a declared %d-byte body with the budget free: %d %s, want 200", limit, status, got)
	}
	step := strings.Repeat("s", bodyStep)
	if status, got := bodyAnswer(t, putBody(t, addr, bodyStep, []byte(step))); status != http.StatusOK || got != strconv.Itoa(bodyStep) {
		t.Errorf("a declared %d-byte body: %d %s, want 200", bodyStep, status, got)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", rpc.PathStartFunction, limit, whole)
	if status, got := bodyAnswer(t, c); status != http.StatusOK || got != strconv.Itoa(limit) {
		t.Errorf("a chunked %d-byte body with the budget free: %d %s, want 200", limit, status, got)
	}
	awaitHeld(t, a, 0, "after bodies of every kind")
}

// A request that times out is told which part of it was late: a head
// that never ended (with the likely cause), or a body.
func TestTimeoutAnswerNamesThePart(t *testing.T) {
	timedOut := fmt.Errorf("error when reading request headers: %w", os.ErrDeadlineExceeded)
	var head fasthttp.RequestCtx
	serverError(&head, timedOut)

	var body fasthttp.RequestCtx
	if err := body.Request.Header.Read(bufio.NewReader(strings.NewReader("PUT /StartFunction HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	serverError(&body, fmt.Errorf("error when reading request body: %w", os.ErrDeadlineExceeded))

	for _, tc := range []struct {
		what      string
		ctx       *fasthttp.RequestCtx
		want, not string
	}{
		{"an unfinished head", &head, "head did not arrive within --head-timeout; a head ends at an empty line, CRLF CRLF", "body"},
		{"a late body", &body, fmt.Sprintf("body did not arrive within %s", bodyTimeout), "bare LF"},
	} {
		var e rpc.ErrorResponse
		if err := rpc.UnmarshalStrict(tc.ctx.Response.Body(), &e, rpc.RefuseUnknownFields); err != nil || e.Error == nil {
			t.Fatalf("%s: answer %s: %v", tc.what, tc.ctx.Response.Body(), err)
		}
		if tc.ctx.Response.StatusCode() != http.StatusBadRequest || e.Error.Kind != rpc.KindBadRequest ||
			!strings.Contains(e.Error.Message, tc.want) || strings.Contains(e.Error.Message, tc.not) {
			t.Errorf("%s: answered %d %s, want 400 bad_request saying %q and not %q", tc.what, tc.ctx.Response.StatusCode(), tc.ctx.Response.Body(), tc.want, tc.not)
		}
	}
}
