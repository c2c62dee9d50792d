package service

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// tlsHandshakeRecord is the first byte of every TLS connection: the
// content type of the record that carries the ClientHello.
const tlsHandshakeRecord = 0x16

// RefusalTimeout bounds the work spent on a connection that is refused:
// its TLS handshake and the write of the refusal.
const RefusalTimeout = 2 * time.Second

// WrongProtocol reports whether first, the first byte a client sent,
// is not what the server speaks: TLS when servesTLS, plain HTTP if not.
func WrongProtocol(first byte, servesTLS bool) bool {
	return (first == tlsHandshakeRecord) != servesTLS
}

// RefuseProtocol answers a client of daemon ("noded", "masterd") that
// spoke the wrong protocol with a plain HTTP answer, with the extra
// header lines headers (each ending in CRLF), of kind
// tls_mismatch saying what to change, logs one short line, and waits,
// within RefusalTimeout, for the client to close, so that closing does
// not reset the answer away. A TLS server would otherwise drop the
// connection without a word, which a client can only take for a dead
// daemon and retry, and a plain server would answer a ClientHello as a
// malformed request.
func RefuseProtocol(c net.Conn, servesTLS bool, daemon, headers string, log *slog.Logger) {
	msg := fmt.Sprintf("this port serves plain HTTP (%s --insecure), and the client began a TLS handshake: connect without TLS (noderpc --insecure, master.Options.Insecure)", daemon)
	if servesTLS {
		msg = "this port serves mutual TLS, and the request came in plain HTTP: connect with TLS and the cluster's client certificate (noderpc --cert, --key and --ca instead of --insecure; master.Options.TLS)"
	}
	log.Warn("refused a connection that spoke the wrong protocol", "remote", c.RemoteAddr().String(), "serves_tls", servesTLS)
	c.SetDeadline(time.Now().Add(RefusalTimeout))
	WriteAndDrain(c, ClosingAnswer(http.StatusBadRequest, rpc.KindTLSMismatch, msg, headers))
}

// WriteAndDrain writes a closing answer to rw, then reads what the
// client sent until the client closes too (within rw's deadline):
// closing with unread bytes would send a reset, which can destroy the
// answer before the client reads it.
func WriteAndDrain(rw net.Conn, answer []byte) {
	if _, err := rw.Write(answer); err != nil {
		return
	}
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, rw)
}

// ClosingAnswer is a whole HTTP answer of status whose body is an rpc
// error of kind with msg, for a connection the daemon closes after it;
// headers are extra header lines, each ending in CRLF.
func ClosingAnswer(status int, kind rpc.Kind, msg, headers string) []byte {
	body, _ := rpc.Marshal(rpc.ErrorResponse{Error: rpc.Errorf(kind, "%s", msg)}) // plain strings: cannot fail
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), headers, len(body), body)
}

// SniffConn is a connection whose first read checks that the client
// speaks what the server serves (see RefuseProtocol); a client that
// does not is answered and the read ends with io.EOF, which the server
// takes for a client that left. On a plain HTTP port it also follows the
// first request head to its end, and refuses at once one that would
// never end (see firstHead).
type SniffConn struct {
	net.Conn
	// ServesTLS, Daemon and Log are RefuseProtocol's arguments.
	ServesTLS bool
	Daemon    string
	Log       *slog.Logger
	// Headers, if set, returns RefuseProtocol's extra header lines.
	Headers func() string
	// sniffed is set once the first bytes have been checked, head once
	// the first head has ended. Only the goroutine serving the
	// connection reads them.
	sniffed bool
	head    firstHead
}

// Read implements net.Conn.
func (c *SniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if (c.sniffed && c.head.done) || n == 0 {
		return n, err
	}
	if !c.sniffed {
		c.sniffed = true
		if WrongProtocol(p[0], c.ServesTLS) {
			RefuseProtocol(c.Conn, c.ServesTLS, c.Daemon, c.headers(), c.Log)
			return 0, io.EOF
		}
		// Under TLS the bytes read here are encrypted; the head is
		// not followed.
		c.head.done = c.ServesTLS
	}
	if !c.head.done && c.head.scan(p[:n]) {
		c.Log.Warn("refused a request whose head lines end with a bare LF", "remote", c.RemoteAddr().String())
		c.SetDeadline(time.Now().Add(RefusalTimeout))
		WriteAndDrain(c.Conn, ClosingAnswer(http.StatusBadRequest, rpc.KindBadRequest, fmt.Sprintf(
			"the request head ends its lines with a bare LF (\\n): HTTP/1.1 ends each line with CRLF (\\r\\n), and a head only at an empty CRLF line, "+
				"so %s would have waited for its end until --head-timeout (send requests with curl or a client library; with nc, use -C)", c.Daemon), c.headers()))
		return 0, io.EOF
	}
	return n, err
}

func (c *SniffConn) headers() string {
	if c.Headers == nil {
		return ""
	}
	return c.Headers()
}

// firstHead follows a connection's first request head to its end, the
// first empty line after the request line, to tell whether that end is
// the CRLF CRLF HTTP/1.1 asks for. fasthttp splits a head's lines at a
// bare LF as well, but finds its end only at CRLF CRLF: a client that
// ends its lines with a bare LF (nc, a hand-written script) was left
// waiting until the head timeout, and then told its request was late.
// Only the first head is followed: a client whose first request was
// well formed does not change its line endings, and the head timeout's
// answer names the cause for a later one (LateRequestError).
type firstHead struct {
	done     bool // the head has ended
	lines    int  // non-empty lines ended so far
	lineLen  int  // bytes of the current line so far
	cr       bool // the last byte was CR
	bareLast bool // the last line ended with a bare LF
}

// scan takes the connection's next bytes and reports whether they end
// the head otherwise than with CRLF CRLF. Empty lines before the request
// line are skipped, as fasthttp skips them.
func (h *firstHead) scan(p []byte) (badEnd bool) {
	for _, b := range p {
		if b != '\n' {
			h.lineLen++
			h.cr = b == '\r'
			continue
		}
		bare := !h.cr
		empty := h.lineLen == 0 || (h.lineLen == 1 && h.cr)
		h.lineLen, h.cr = 0, false
		switch {
		case !empty:
			h.lines++
			h.bareLast = bare
		case h.lines > 0:
			h.done = true
			return bare || h.bareLast
		}
	}
	return false
}
