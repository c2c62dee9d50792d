package noded

import (
	"io"

	"github.com/noderpc/noderpc/noded/service"
)

// Read checks, on the first bytes a client sends, that it speaks what
// noded serves: TLS on a TLS port, plain HTTP on a plain one. A client
// that does not gets a plain HTTP answer of kind tls_mismatch saying
// what to change (service.RefuseProtocol), and the connection ends.
func (c *admittedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.sniffed || n == 0 {
		return n, err
	}
	c.sniffed = true
	servesTLS := c.owner.tls != nil
	if !service.WrongProtocol(p[0], servesTLS) {
		return n, err
	}
	service.RefuseProtocol(c.Conn, servesTLS, "noded", "", c.owner.log)
	// io.EOF before any byte: the server ends the connection quietly.
	return 0, io.EOF
}
