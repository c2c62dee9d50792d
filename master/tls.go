package master

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// LoadTLS returns the TLS configuration for [Options.TLS] from PEM files:
// the client certificate and key a master (or observer) presents, and the
// cluster CA that node certificates must chain to. It refuses a
// certificate made only for serving (a node's), which no node would
// accept from a client.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("master: loading the client certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if eku := pair.Leaf.ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, x509.ExtKeyUsageClientAuth) && !slices.Contains(eku, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("master: %s is not a client certificate (no client auth key usage; a node's certificate?): issue one with noderpc certs issue --master NAME", certFile)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("master: reading the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("master: the cluster CA file %s holds no PEM certificate", caFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
	}, nil
}

// nodeTLSConfig is base for the node at addr: its certificate must name
// the host of addr, so that a node presenting another node's certificate
// is refused. A ServerName set in base wins, for nodes dialled at an
// address their certificate does not name.
func nodeTLSConfig(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr) // New checked addr
		c.ServerName = host
	}
	c.MinVersion = max(c.MinVersion, tls.VersionTLS13)
	return c
}

// CertificateError says that the TLS handshake with a node failed on a
// certificate: the node refused the client's (unknown CA, expired, not a
// client certificate, none), or the client refused the node's (unknown
// CA, expired, or naming another node). Retrying cannot change that, so
// the procedure is not retried. It matches rpc.ErrCertificate with
// errors.Is and unwraps to the TLS or X.509 error.
type CertificateError struct {
	// Node is the node's host:port.
	Node string
	// Procedure is the procedure that was being sent, e.g. "Version".
	Procedure string
	// ByNode is true when the node refused the client's certificate,
	// false when the client refused the node's.
	ByNode bool
	// Err is the TLS or X.509 error.
	Err error
}

// Error reads "node1:1811: Version: the node refused this client's
// certificate: remote error: tls: bad certificate".
func (e *CertificateError) Error() string {
	who := "this client refused the node's certificate"
	if e.ByNode {
		who = "the node refused this client's certificate"
	}
	return fmt.Sprintf("%s: %s: %s: %v", e.Node, e.Procedure, who, e.Err)
}

// Unwrap returns the certificate kind and the cause.
func (e *CertificateError) Unwrap() []error {
	return []error{&rpc.Error{Kind: rpc.KindCertificate, Message: e.Err.Error()}, e.Err}
}

// TLSMismatchError says that the client and the node disagree on TLS:
// the client spoke plain HTTP ([Options.Insecure]) to a node serving
// TLS, which answered so, or TLS to a node serving plain HTTP, whose
// answer to the ClientHello was not TLS. Retrying cannot change that, so
// the procedure is not retried. It matches rpc.ErrTLSMismatch with
// errors.Is.
type TLSMismatchError struct {
	// Node is the node's host:port.
	Node string
	// Procedure is the procedure that was being sent, e.g. "Version".
	Procedure string
	// NodeServesTLS is true when the node serves TLS and the client spoke
	// plain HTTP; false for the other way round.
	NodeServesTLS bool
	// Err is the node's answer, or the TLS error.
	Err error
}

// Error reads "node1:1811: Version: the node serves TLS, and this client
// spoke plain HTTP: connect with TLS and a client certificate (noderpc
// --cert, --key, --ca; Options.TLS), not --insecure".
func (e *TLSMismatchError) Error() string {
	if e.NodeServesTLS {
		return fmt.Sprintf("%s: %s: the node serves TLS, and this client spoke plain HTTP: connect with TLS and a client certificate (noderpc --cert, --key, --ca; Options.TLS), not --insecure", e.Node, e.Procedure)
	}
	return fmt.Sprintf("%s: %s: the node serves plain HTTP (noded --insecure), and this client spoke TLS: connect with noderpc --insecure (Options.Insecure)", e.Node, e.Procedure)
}

// Unwrap returns the tls_mismatch kind and the cause.
func (e *TLSMismatchError) Unwrap() []error {
	return []error{&rpc.Error{Kind: rpc.KindTLSMismatch, Message: e.Err.Error()}, e.Err}
}

// plainHTTPAnswer reports whether err is a TLS handshake whose answer
// was not TLS: the first record is not one, and reads as HTTP (noded
// --insecure answers a ClientHello so) or as anything else plain.
func plainHTTPAnswer(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}

// certificateFailure returns the certificate error err is, or nil if it
// is another transport failure.
//
// In TLS 1.3 the client's handshake ends before the node has checked the
// client's certificate, so the node's refusal arrives as an alert on the
// first read, which crypto/tls reports as a net.OpError "remote error".
func certificateFailure(node, proc string, err error) error {
	var (
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		op       *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &hostname):
		return &CertificateError{Node: node, Procedure: proc, Err: err}
	case errors.As(err, &op) && op.Op == "remote error":
		return &CertificateError{Node: node, Procedure: proc, ByNode: true, Err: op.Err}
	}
	return nil
}

// tlsDialer connects to a node and makes the TLS handshake itself rather
// than through fasthttp, to see the node's TLS alerts: fasthttp reports
// any failure to read an answer's first byte as a closed connection, and
// in TLS 1.3 a node's refusal of the client's certificate arrives just
// so, as an alert on the first read after the client's side of the
// handshake is done.
type tlsDialer struct {
	cfg *tls.Config
	// fallback bounds a dial fasthttp gives no timeout.
	fallback time.Duration
	// alert is the last TLS alert read from the node: every connection
	// presents the same certificate, so the node's verdict on one is its
	// verdict on all.
	alert atomic.Pointer[alertSeen]
}

type alertSeen struct {
	err error
	at  time.Time
}

func (d *tlsDialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = d.fallback
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, d.cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return &alertConn{Conn: conn, d: d}, nil
}

// alertSince returns the node's TLS alert if one was read at or after
// start, else nil.
func (d *tlsDialer) alertSince(start time.Time) error {
	if a := d.alert.Load(); a != nil && !a.at.Before(start) {
		return a.err
	}
	return nil
}

// alertConn records the TLS alerts its reads return.
type alertConn struct {
	*tls.Conn
	d *tlsDialer
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var op *net.OpError
	if err != nil && errors.As(err, &op) && op.Op == "remote error" {
		c.d.alert.Store(&alertSeen{err: err, at: time.Now()})
	}
	return n, err
}
