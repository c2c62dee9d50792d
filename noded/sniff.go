package noded

import (
	"io"
	"net"
	"net/http"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// tlsHandshakeRecord is the first byte of every TLS connection: the
// content type of the record that carries the ClientHello.
const tlsHandshakeRecord = 0x16

// Read checks, on the first bytes a client sends, that it speaks what
// noded serves: TLS on a TLS port, plain HTTP on a plain one. A client
// that does not gets a plain HTTP answer of kind tls_mismatch saying
// what to change, as Go's net/http does for plain HTTP on a TLS port,
// and the connection ends: a TLS server would otherwise drop it without
// a word, which a client can only take for a dead node and retry, and a
// plain server would answer a ClientHello as a malformed request.
func (c *admittedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.sniffed || n == 0 {
		return n, err
	}
	c.sniffed = true
	servesTLS := c.owner.tls != nil
	if (p[0] == tlsHandshakeRecord) == servesTLS {
		return n, err
	}
	c.owner.refuseProtocol(c.Conn, servesTLS)
	// io.EOF before any byte: the server ends the connection quietly.
	return 0, io.EOF
}

// refuseProtocol answers a client that spoke the wrong protocol, logs
// one short line, and waits, within refusalTimeout, for the client to
// close, so that closing does not reset the answer away.
func (l *admission) refuseProtocol(c net.Conn, servesTLS bool) {
	msg := "this port serves plain HTTP (noded --insecure), and the client began a TLS handshake: connect without TLS (noderpc --insecure, master.Options.Insecure)"
	if servesTLS {
		msg = "this port serves mutual TLS, and the request came in plain HTTP: connect with TLS and the cluster's client certificate (noderpc --cert, --key and --ca instead of --insecure; master.Options.TLS)"
	}
	l.log.Warn("refused a connection that spoke the wrong protocol", "remote", c.RemoteAddr().String(), "serves_tls", servesTLS)
	c.SetDeadline(time.Now().Add(refusalTimeout))
	writeAndDrain(c, closingAnswer(http.StatusBadRequest, rpc.KindTLSMismatch, msg, ""))
}
