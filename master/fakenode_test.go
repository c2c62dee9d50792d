package master

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode is a node that answers as a test tells it to: a TCP server on
// loopback that reads each HTTP request and hands it, with the raw
// connection, to the test's answerFunc. It misbehaves byte by byte,
// which no HTTP server library lets a handler do.
type fakeNode struct {
	addr     string
	requests atomic.Int32 // requests read
	conns    atomic.Int32 // connections accepted
}

// answerFunc answers one request on conn; false closes the connection.
type answerFunc func(conn net.Conn, req *http.Request) bool

// startFake starts a fake node for the life of t.
func startFake(t *testing.T, answer answerFunc) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{addr: ln.Addr().String()}
	var (
		mu     sync.Mutex
		open   []net.Conn
		closed bool
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			mu.Lock()
			if closed {
				conn.Close()
			}
			open = append(open, conn)
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					f.requests.Add(1)
					if !answer(conn, req) {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return f
}

// answerJSON answers every request with status and body, as noded does.
func answerJSON(status int, body string) answerFunc {
	return func(conn net.Conn, _ *http.Request) bool {
		_, err := fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
		return err == nil
	}
}

// answerChunked answers every request with 200 and body in chunks of at
// most size bytes.
func answerChunked(body string, size int) answerFunc {
	return func(conn net.Conn, _ *http.Request) bool {
		w := bufio.NewWriter(conn)
		fmt.Fprint(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		for b := body; b != ""; {
			n := min(size, len(b))
			fmt.Fprintf(w, "%x\r\n%s\r\n", n, b[:n])
			b = b[n:]
		}
		fmt.Fprint(w, "0\r\n\r\n")
		return w.Flush() == nil
	}
}

// flood answers with head, then writes chunk over and over until the
// client drops the connection, and sends the write error on dropped.
func flood(head string, chunk []byte, dropped chan<- error) answerFunc {
	return func(conn net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(conn, head)
		for err == nil {
			_, err = conn.Write(chunk)
		}
		dropped <- err
		return false
	}
}

// trickle writes answer one byte every gap, and sends on sent how many
// bytes were written before the client dropped the connection, or all.
func trickle(answer string, gap time.Duration, sent chan<- int) answerFunc {
	return func(conn net.Conn, _ *http.Request) bool {
		for i := range len(answer) {
			if _, err := conn.Write([]byte{answer[i]}); err != nil {
				sent <- i
				return false
			}
			time.Sleep(gap) // the misbehaviour itself, not synchronisation
		}
		sent <- len(answer)
		return false
	}
}

// silent reads the request and says nothing until the client leaves.
func silent(conn net.Conn, _ *http.Request) bool {
	io.Copy(io.Discard, conn)
	return false
}
