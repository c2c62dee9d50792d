package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// An answer after which fasthttp reads no body (1xx, 204, 304) but that
// the node follows with more bytes must not leave them on a pooled
// connection, to be read as the answer to the next request: the
// connection of such an answer is closed. The fake node sends, to the
// first request, a 204 or 304 and, once the client has it, a whole
// forged answer; the next request must go over a new connection and get
// the real one.
func TestNoAnswerLeftOnABodilessStatus(t *testing.T) {
	forged := nodetest.AnswerJSON(http.StatusOK, `{"version":"forged","boot_id":"forged"}`)
	real := nodetest.AnswerJSON(http.StatusOK, `{"version":"1.0","boot_id":"b"}`)
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ctx := t.Context()
			var first atomic.Bool
			answered := make(chan struct{})
			f := nodetest.StartFake(t, func(conn net.Conn, req *http.Request) bool {
				if first.Swap(true) {
					return real(conn, req)
				}
				fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\n\r\n", status, http.StatusText(status))
				select {
				case <-answered:
				case <-ctx.Done():
					return false
				}
				forged(conn, req)
				answered <- struct{}{}
				return true
			})
			c := newClient(t, f.Addr, testOptions())
			if _, err := c.Version(context.Background()); !errors.Is(err, rpc.ErrProtocolError) {
				t.Fatalf("Version answered %d = %v, want protocol_error", status, err)
			}
			// The forged answer is written now, and is in the client's
			// socket before the next request: loopback delivers as it
			// is written.
			answered <- struct{}{}
			<-answered
			v, err := c.Version(context.Background())
			if err != nil {
				t.Fatalf("Version after the %d: %v", status, err)
			}
			if v.Version == "forged" {
				t.Errorf("the second Version read the bytes the node sent after its %d as its answer", status)
			}
			if n := f.Conns.Load(); n != 2 {
				t.Errorf("the node saw %d connections, want 2: the first one closed after its %d", n, status)
			}
		})
	}
}
