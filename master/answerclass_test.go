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
	c, err := New(addr, Options{Insecure: true, Timeout: 5 * time.Second,
		Retry: RetryPolicies{Version: Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
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
