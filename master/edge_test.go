package master

// Tests of the client's edge: what it does with a node that answers too
// much, too slowly, or not at all, through fake nodes on loopback.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// edgeClient is a client of addr with a small answer bound and a socket
// timeout long enough that only a bug waits it out.
func edgeClient(t *testing.T, addr string, maxAnswer int64) *Client {
	t.Helper()
	c, err := New(addr, Options{Insecure: true, Timeout: 5 * time.Second, MaxAnswer: maxAnswer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// versionOfSize is a Version answer of exactly n bytes: JSON padded with
// spaces.
func versionOfSize(t *testing.T, n int) string {
	t.Helper()
	v := `{"version":"edge","protocol":1,"boot_id":"b","pid":1}`
	if n < len(v) {
		t.Fatalf("no Version answer fits in %d bytes", n)
	}
	return v + strings.Repeat(" ", n-len(v))
}

func TestAnswerOverLimitFailsAtOnceWithoutRetry(t *testing.T) {
	const limit = 1 << 20
	chunk := bytes.Repeat([]byte(" "), 64<<10)
	for _, tc := range []struct {
		name         string
		head         string
		body         func([]byte) []byte // how each chunk is framed
		wantDeclared int64
	}{
		{"declared length", "HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n", nil, 2000000000},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			func(b []byte) []byte { return fmt.Appendf(nil, "%x\r\n%s\r\n", len(b), b) }, -1},
		{"until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropped := make(chan error, 1)
			framed := chunk
			if tc.body != nil {
				framed = tc.body(chunk)
			}
			f := nodetest.StartFake(t, nodetest.Flood(tc.head, framed, dropped))
			c := edgeClient(t, f.Addr, limit)

			_, err := c.Version(context.Background())

			var tooLarge *AnswerTooLargeError
			if !errors.As(err, &tooLarge) || !errors.Is(err, ErrAnswerTooLarge) || !errors.Is(err, rpc.ErrProtocolError) {
				t.Fatalf("Version from a node flooding %s = %v, want an *AnswerTooLargeError matching ErrAnswerTooLarge and rpc.ErrProtocolError", tc.name, err)
			}
			want := AnswerTooLargeError{Node: f.Addr, Procedure: "Version", Limit: limit, Declared: tc.wantDeclared}
			if *tooLarge != want {
				t.Errorf("error = %+v, want %+v", *tooLarge, want)
			}
			if !strings.HasPrefix(err.Error(), f.Addr+": Version: protocol_error: the node ") {
				t.Errorf("error text %q does not name the node, the procedure and what the node did", err)
			}
			if n := f.Requests.Load(); n != 1 {
				t.Errorf("the node got %d requests, want 1: an answer over the limit is not retried", n)
			}
			select {
			case err := <-dropped:
				t.Logf("the node's flood ended: %v", err)
			case <-time.After(10 * time.Second):
				t.Error("the node could still write its flood 10s after the client gave up: the connection was not dropped")
			}
		})
	}
}

func TestAnswerAtLimitIsReadOnePastItIsNot(t *testing.T) {
	const limit = 64 << 10
	for _, tc := range []struct {
		name   string
		answer func(body string) nodetest.Answer
	}{
		{"declared length", func(body string) nodetest.Answer { return nodetest.AnswerJSON(200, body) }},
		{"chunked", func(body string) nodetest.Answer { return nodetest.AnswerChunked(body, 1000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := nodetest.StartFake(t, tc.answer(versionOfSize(t, limit)))
			c := edgeClient(t, at.Addr, limit)
			for range 2 {
				if v, err := c.Version(context.Background()); err != nil || v.Version != "edge" {
					t.Fatalf("Version with an answer of exactly the limit = %+v, %v; want it read", v, err)
				}
			}
			if n := at.Conns.Load(); n != 1 {
				t.Errorf("two answers within the limit took %d connections, want 1: a body read to its end keeps the connection", n)
			}

			over := nodetest.StartFake(t, tc.answer(versionOfSize(t, limit+1)))
			if _, err := edgeClient(t, over.Addr, limit).Version(context.Background()); !errors.Is(err, ErrAnswerTooLarge) {
				t.Errorf("Version with an answer one byte over the limit = %v, want ErrAnswerTooLarge", err)
			}
		})
	}
}

// endless is a body that never ends; it counts the bytes read from it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.read += int64(len(p))
	return len(p), nil
}

func TestReadBodyReadsNoMoreThanTheLimit(t *testing.T) {
	const limit = 3<<20 + 7 // not a multiple of any block size
	for _, tc := range []struct {
		name     string
		declared int
		wantRead int64
	}{
		{"declared over the limit", 2000000000, 0},
		{"chunked", -1, limit + 1},
		{"until close", -2, limit + 1},
	} {
		body := &endless{}
		_, err := readBody(body, tc.declared, limit)
		var tooLarge *tooLargeAnswer
		if !errors.As(err, &tooLarge) {
			t.Errorf("readBody(endless, %d, %d) = %v, want a tooLargeAnswer", tc.declared, limit, err)
		}
		if body.read != tc.wantRead {
			t.Errorf("readBody(endless, %d, %d) read %d bytes, want %d", tc.declared, limit, body.read, tc.wantRead)
		}
	}
	got, err := readBody(strings.NewReader("hello"), -1, 5)
	if string(got) != "hello" || err != nil {
		t.Errorf("readBody of 5 chunked bytes with limit 5 = %q, %v; want them", got, err)
	}
	got, err = readBody(io.MultiReader(strings.NewReader("hel"), failing{io.ErrUnexpectedEOF}), -1, 100)
	if err == nil || got != nil {
		t.Errorf("readBody of a chunked body that broke off = %q, %v; want an error", got, err)
	}
}

// failing is a reader that fails with err.
type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }

func TestTricklingNodeIsCutOffAtDeadline(t *testing.T) {
	const (
		timeout = 500 * time.Millisecond
		gap     = 50 * time.Millisecond // well within timeout: a per-read deadline never fires
	)
	body := `{"version":"slow","protocol":1}`
	whole := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: %s\r\nContent-Length: %d\r\n\r\n%s",
		strings.Repeat("p", 100), len(body), body)
	head := whole[:len(whole)-len(body)]
	for _, tc := range []struct {
		name   string
		answer func(sent chan<- int) nodetest.Answer
		want   string
	}{
		{"status line and headers", func(sent chan<- int) nodetest.Answer { return nodetest.Trickle(whole, gap, sent) },
			"no whole answer within 500ms: it sent only part of its answer's status line and headers"},
		{"body", func(sent chan<- int) nodetest.Answer {
			tr := nodetest.Trickle(body, gap, sent)
			return func(conn net.Conn, req *http.Request) bool {
				io.WriteString(conn, head)
				return tr(conn, req)
			}
		}, "no whole answer within 500ms: it sent HTTP 200 and only "},
		{"nothing", func(sent chan<- int) nodetest.Answer {
			return func(conn net.Conn, req *http.Request) bool { sent <- 0; return nodetest.Silent(conn, req) }
		}, "no answer within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan int, 1)
			f := nodetest.StartFake(t, tc.answer(sent))
			// One attempt: the retry budget is the socket timeout.
			p := Policy{MaxElapsed: timeout}
			c, err := New(f.Addr, Options{Insecure: true, Timeout: timeout,
				Retry: RetryPolicies{Start: p, Wait: p, Cancel: p, Release: p, List: p, Version: p}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			v, err := c.Version(context.Background())

			if !errors.Is(err, rpc.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), f.Addr+": unreachable after 1 attempt over ") {
				t.Fatalf("Version from a node trickling its %s = %+v, %v; want unreachable after 1 attempt, saying %q", tc.name, v, err, tc.want)
			}
			c.Close()
			select {
			case n := <-sent:
				if tc.name != "nothing" && n >= len(body) {
					t.Errorf("the node trickled its whole answer (%d bytes) before the client gave up: the deadline was not for the whole answer", n)
				}
			case <-time.After(20 * time.Second):
				t.Error("the node was still trickling 20s after the client gave up: the connection was not dropped")
			}
		})
	}
}

func TestDefaultMaxAnswerFitsNodedDefaults(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"max result", nodeMaxResult, jobs.DefaultMaxResult},
		{"max log lines", nodeMaxLogLines, jobs.DefaultMaxLogLines},
		{"max log line", nodeMaxLogLine, jobs.DefaultMaxLogLine},
	} {
		if tc.got != tc.want {
			t.Errorf("DefaultMaxAnswer counts a %s of %d, noded's default is %d", tc.name, tc.got, tc.want)
		}
	}
	if DefaultMaxAnswer != 41438752 {
		t.Errorf("DefaultMaxAnswer = %d, want the 41438752 its doc comment and doc/client.md state", DefaultMaxAnswer)
	}
	if _, err := New("127.0.0.1:1", Options{Insecure: true, MaxAnswer: -1}); err == nil {
		t.Error("New with a negative MaxAnswer succeeded, want an error")
	}
}
