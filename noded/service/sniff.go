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
// takes for a client that left.
type SniffConn struct {
	net.Conn
	// ServesTLS, Daemon and Log are RefuseProtocol's arguments.
	ServesTLS bool
	Daemon    string
	Log       *slog.Logger
	// Headers, if set, returns RefuseProtocol's extra header lines.
	Headers func() string
	// sniffed is set once the first bytes have been checked. Only the
	// goroutine serving the connection reads it.
	sniffed bool
}

// Read implements net.Conn.
func (c *SniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.sniffed || n == 0 {
		return n, err
	}
	c.sniffed = true
	if !WrongProtocol(p[0], c.ServesTLS) {
		return n, err
	}
	var headers string
	if c.Headers != nil {
		headers = c.Headers()
	}
	RefuseProtocol(c.Conn, c.ServesTLS, c.Daemon, headers, c.Log)
	return 0, io.EOF
}
