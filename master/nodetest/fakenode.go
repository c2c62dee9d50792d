package nodetest

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

// FakeNode is a node that answers as a test tells it to: a TCP server on
// loopback that reads each HTTP request and hands it, with the raw
// connection, to the test's [Answer]. It misbehaves byte by byte, which
// no HTTP server library lets a handler do.
type FakeNode struct {
	// Addr is the host:port the fake node listens on.
	Addr string
	// Requests counts the requests read, Conns the connections accepted.
	Requests, Conns atomic.Int32
}

// Answer answers one request on conn, whose body has been read; false
// closes the connection, true reads the next request on it.
type Answer func(conn net.Conn, req *http.Request) bool

// StartFake starts a fake node for the life of t. Its cleanup closes the
// listener and every open connection and waits for every answer to
// return.
func StartFake(t testing.TB, answer Answer) *FakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &FakeNode{Addr: ln.Addr().String()}
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
			f.Conns.Add(1)
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
					f.Requests.Add(1)
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

// AnswerJSON answers every request with status and body, as noded does,
// and keeps the connection.
func AnswerJSON(status int, body string) Answer {
	return func(conn net.Conn, _ *http.Request) bool {
		_, err := fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
		return err == nil
	}
}

// AnswerChunked answers every request with 200 and body in chunks of at
// most size bytes, and keeps the connection.
func AnswerChunked(body string, size int) Answer {
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

// Flood answers with head, then writes chunk over and over until the
// client drops the connection, sends the write error on dropped unless
// it is nil, and closes the connection.
func Flood(head string, chunk []byte, dropped chan<- error) Answer {
	return func(conn net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(conn, head)
		for err == nil {
			_, err = conn.Write(chunk)
		}
		if dropped != nil {
			dropped <- err
		}
		return false
	}
}

// Trickle writes answer one byte every gap, sends on sent (unless it is
// nil) how many bytes were written before the client dropped the
// connection, or all, and closes the connection.
func Trickle(answer string, gap time.Duration, sent chan<- int) Answer {
	return func(conn net.Conn, _ *http.Request) bool {
		n := len(answer)
		for i := range len(answer) {
			if _, err := conn.Write([]byte{answer[i]}); err != nil {
				n = i
				break
			}
			time.Sleep(gap) // the misbehaviour itself, not synchronisation
		}
		if sent != nil {
			sent <- n
		}
		return false
	}
}

// Silent reads the request and says nothing until the client leaves.
func Silent(conn net.Conn, _ *http.Request) bool {
	io.Copy(io.Discard, conn)
	return false
}
