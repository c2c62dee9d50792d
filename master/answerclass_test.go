package master

// Tests of how the client classes a node's answer by its status and by
// the kind its error object carries, through fake nodes on loopback.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// rawAnswer answers every request with the status line and headers of
// head, then body with its length, and closes the connection: what a
// proxy, a load balancer or another server on the node's port sends.
func rawAnswer(head, body string) nodetest.Answer {
	return func(conn net.Conn, _ *http.Request) bool {
		fmt.Fprintf(conn, "%s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", head, len(body), body)
		return false
	}
}

// classClient is a client of addr whose Version is tried up to three
// times, with back-offs short enough that a retried answer costs the
// test nothing.
func classClient(t *testing.T, addr string) *Client {
	t.Helper()
	return newClient(t, addr, Options{Insecure: true, Timeout: 5 * time.Second,
		Retry: RetryPolicies{Version: Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}}})
}

// An answer whose status is neither 2xx, 4xx nor 5xx (an upgrade, a
// redirect, a status HTTP does not have) is a protocol error: something
// on the node's port speaks another protocol, which is not the caller's
// fault and which another attempt would meet again. It used to be
// bad_request, whatever the body said.
func TestAnswerOfNoErrorStatusIsAProtocolError(t *testing.T) {
	busy := `{"error":{"kind":"busy","message":"come back later"}}`
	for _, tc := range []struct {
		name, head, body string
	}{
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket", ""},
		{"moved permanently", "HTTP/1.1 301 Moved Permanently\r\nLocation: https://login.example/", "<html>moved</html>"},
		{"found", "HTTP/1.1 302 Found\r\nLocation: /login", ""},
		{"not modified", "HTTP/1.1 304 Not Modified", ""},
		{"temporary redirect with an error object", "HTTP/1.1 307 Temporary Redirect\r\nLocation: /", busy},
		{"permanent redirect", "HTTP/1.1 308 Permanent Redirect\r\nLocation: /", `{"error":{"kind":"bad_request","message":"x"}}`},
		{"600", "HTTP/1.1 600 Beyond", busy},
		{"999", "HTTP/1.1 999 Beyond", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nodetest.StartFake(t, rawAnswer(tc.head, tc.body))
			_, err := classClient(t, f.Addr).Version(context.Background())
			if got := rpc.KindOf(err); got != rpc.KindProtocolError || !errors.Is(err, rpc.ErrProtocolError) {
				t.Fatalf("Version from a node answering %q = %v (kind %q), want protocol_error", tc.head, err, got)
			}
			status := strings.Fields(tc.head)[1]
			if !strings.Contains(err.Error(), "HTTP "+status) || !strings.HasPrefix(err.Error(), f.Addr+": Version: ") {
				t.Errorf("Version from a node answering %q = %q, want it to name the node, the procedure and the status", tc.head, err)
			}
			if n := f.Requests.Load(); n != 1 {
				t.Errorf("Version from a node answering %q sent %d requests, want 1: the answer is final", tc.head, n)
			}
		})
	}
}

// A 4xx or 5xx answer keeps the kind of its error object, and one
// without an object (a proxy's) gets the kind its status means; busy is
// retried.
func TestErrorAnswersKeepTheirKind(t *testing.T) {
	for _, tc := range []struct {
		name, head, body string
		want             rpc.Kind
		wantRequests     int32
	}{
		{"bad request", "HTTP/1.1 400 Bad Request", `{"error":{"kind":"bad_request","message":"malformed"}}`, rpc.KindBadRequest, 1},
		{"forbidden", "HTTP/1.1 403 Forbidden", `{"error":{"kind":"forbidden","message":"observer"}}`, rpc.KindForbidden, 1},
		{"unknown call", "HTTP/1.1 404 Not Found", `{"error":{"kind":"unknown_call","message":"no call"}}`, rpc.KindUnknownCall, 1},
		{"lost", "HTTP/1.1 410 Gone", `{"error":{"kind":"lost","message":"earlier daemon"}}`, rpc.KindLost, 1},
		{"internal", "HTTP/1.1 500 Internal Server Error", `{"error":{"kind":"internal","message":"bug"}}`, rpc.KindInternal, 1},
		{"shutting down", "HTTP/1.1 503 Service Unavailable", `{"error":{"kind":"shutting_down","message":"bye"}}`, rpc.KindShuttingDown, 1},
		{"busy", "HTTP/1.1 503 Service Unavailable", `{"error":{"kind":"busy","message":"full"}}`, rpc.KindBusy, 3},
		{"a proxy's 502", "HTTP/1.1 502 Bad Gateway", "<html>bad gateway</html>", rpc.KindInternal, 1},
		{"a proxy's 429", "HTTP/1.1 429 Too Many Requests", "slow down", rpc.KindBusy, 3},
		{"a proxy's 404", "HTTP/1.1 404 Not Found", "", rpc.KindUnknownFunction, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nodetest.StartFake(t, rawAnswer(tc.head, tc.body))
			_, err := classClient(t, f.Addr).Version(context.Background())
			if got := rpc.KindOf(err); got != tc.want {
				t.Errorf("Version from a node answering %q %s = %v (kind %q), want kind %q", tc.head, tc.body, err, got, tc.want)
			}
			if n := f.Requests.Load(); n != tc.wantRequests {
				t.Errorf("Version from a node answering %q %s sent %d requests, want %d", tc.head, tc.body, n, tc.wantRequests)
			}
		})
	}
}

// An error answer whose kind no request is answered with (one this
// client does not know, or one of a call's or the client's own kinds)
// is a protocol error that quotes the node's kind and message: a caller
// testing kinds gets one it can test, and the node's words are kept. It
// is not retried, whatever its status, since the client cannot tell
// what it means.
func TestErrorAnswerOfAnUnknownKind(t *testing.T) {
	for _, tc := range []struct {
		status int
		kind   string
	}{
		{400, "no_such_kind"},
		{429, "no_such_kind"},
		{500, "no_such_kind"},
		{503, "no_such_kind"},
		{503, "BUSY"},
		{500, "function_failed"},
		{500, "unreachable"},
		{400, "certificate"},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.kind), func(t *testing.T) {
			body := fmt.Sprintf(`{"error":{"kind":%q,"message":"the node's own words"}}`, tc.kind)
			f := nodetest.StartFake(t, rawAnswer(fmt.Sprintf("HTTP/1.1 %d %s", tc.status, http.StatusText(tc.status)), body))
			_, err := classClient(t, f.Addr).Version(context.Background())
			if got := rpc.KindOf(err); got != rpc.KindProtocolError || !errors.Is(err, rpc.ErrProtocolError) {
				t.Fatalf("Version from a node answering %d %s = %v (kind %q), want protocol_error", tc.status, body, err, got)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("%q", tc.kind)) || !strings.Contains(msg, "the node's own words") {
				t.Errorf("Version from a node answering %d %s = %q, want the node's kind and message quoted", tc.status, body, msg)
			}
			if n := f.Requests.Load(); n != 1 {
				t.Errorf("Version from a node answering %d %s sent %d requests, want 1", tc.status, body, n)
			}
		})
	}
}

// A Call whose start is answered with an unknown kind fails at once with
// a protocol error: it neither waits nor retries.
func TestCallAnsweredAnUnknownKindEnds(t *testing.T) {
	f := nodetest.StartFake(t, nodetest.AnswerJSON(503, `{"error":{"kind":"overloaded_v3","message":"try the other rack"}}`))
	c := classClient(t, f.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Call(ctx, "echo", "hi", CallOptions{})
	if !errors.Is(err, rpc.ErrProtocolError) || !strings.Contains(err.Error(), "overloaded_v3") || ctx.Err() != nil {
		t.Fatalf("Call against a node answering an unknown kind = %v, want a protocol_error naming the kind, before the deadline", err)
	}
	if n := f.Requests.Load(); n != 1 {
		t.Errorf("Call against a node answering an unknown kind sent %d requests, want 1", n)
	}
}
