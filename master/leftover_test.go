package master

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// An answer after which fasthttp reads no body (1xx, 204, 304) but that
// the node follows with more bytes must not leave them on a pooled
// connection, to be read as the answer to the next request: the
// connection of such an answer is closed. The fake node sends, on its
// first connection, a 204 or 304 and, once the client has it, a whole
// forged answer; the next request must go over a new connection and get
// the real one.
func TestNoAnswerLeftOnABodilessStatus(t *testing.T) {
	const forged = `{"version":"forged","boot_id":"forged"}`
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			var conns atomic.Int32
			answered := make(chan struct{})
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					n := conns.Add(1)
					go serveLeftover(conn, n == 1, status, forged, answered)
				}
			}()
			c := newClient(t, ln.Addr().String(), testOptions())
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
			if n := conns.Load(); n != 2 {
				t.Errorf("the node saw %d connections, want 2: the first one closed after its %d", n, status)
			}
		})
	}
}

// serveLeftover answers every request on conn with a real Version, but
// the first request of the first connection with status, and then, once
// the test says the client has it (answered), with the forged answer.
func serveLeftover(conn net.Conn, first bool, status int, forged string, answered chan struct{}) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		req.Body.Close()
		if first {
			first = false
			fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\n\r\n", status, http.StatusText(status))
			<-answered
			writeJSON(conn, forged)
			answered <- struct{}{}
			continue
		}
		writeJSON(conn, `{"version":"1.0","boot_id":"b"}`)
	}
}

func writeJSON(conn net.Conn, body string) {
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}
