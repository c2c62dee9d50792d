package membership

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// maxAnswer bounds an answer of masterd: a session carries the node's
// configuration and the list of masters, nothing near this size.
const maxAnswer = 4 << 20

// MasterError is a procedure that did not get a good answer from a
// master: the master refused it (Err is an *rpc.Error), or the network
// or TLS failed.
type MasterError struct {
	// Master is the master's URL; Procedure the path, e.g. "/Hello".
	Master, Procedure string
	Err               error
}

// Error reads "https://m1:1812/Hello: unknown_session: ...".
func (e *MasterError) Error() string {
	return fmt.Sprintf("%s%s: %v", e.Master, e.Procedure, e.Err)
}

// Unwrap returns the cause, so errors.Is(err, rpc.ErrUnknownSession)
// holds for a renewal masterd no longer knows.
func (e *MasterError) Unwrap() error { return e.Err }

// NotActiveError is the answer of a standby master (rpc.KindNotActive,
// HTTP 421): it holds no sessions, and names the active master if one
// is. It matches rpc.ErrNotActive with errors.Is.
type NotActiveError struct {
	// Active is the URL of the active master, as the standby's
	// rpc.HeaderActiveMaster gave it (not checked); empty while no
	// master is active, during an election.
	Active string
	// Err is the standby's answer.
	Err *rpc.Error
}

// Error is the standby's message, e.g. "not_active: not active; the
// active master is https://m2:1812".
func (e *NotActiveError) Error() string { return e.Err.Error() }

// Unwrap returns the standby's answer, of kind not_active.
func (e *NotActiveError) Unwrap() error { return e.Err }

// ErrNotMaster is the cause of a *MasterError whose peer presented a
// certificate of the cluster CA without the master role: a node
// certificate must not let a node pass for a master.
var ErrNotMaster = errors.New("the peer's certificate does not carry the master role")

// client speaks to one master over one fasthttp.HostClient, whose
// connections are dialled by dial: TCP with service.DefaultDeadPeer, then
// TLS when the daemon serves TLS.
type client struct {
	url string
	hc  *fasthttp.HostClient
	// tls returns the configuration of one TLS connection; nil is plain
	// HTTP.
	tls func(serverName string) (*tls.Config, error)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newClient(masterURL string, tlsFor func(string) (*tls.Config, error)) *client {
	c := &client{url: masterURL, tls: tlsFor, conns: make(map[net.Conn]struct{})}
	c.hc = &fasthttp.HostClient{
		Addr:        hostPort(masterURL),
		Name:        "noded",
		DialTimeout: c.dial,
		// The session is one request after another on one connection;
		// a second one serves the leave while a renewal is cut off.
		MaxConns:            2,
		MaxIdleConnDuration: time.Minute,
		// Every request carries its own deadline (DoDeadline).
		MaxIdemponentCallAttempts: 1,
		DialDualStack:             true,
		MaxResponseBodySize:       maxAnswer,
	}
	return c
}

// dial opens one connection to the master: keepalive and
// TCP_USER_TIMEOUT first, so that a master that vanishes while a renewal
// is held is seen within seconds, then the TLS handshake, which must
// show a certificate of the cluster CA for the master's host that
// carries the master role.
func (c *client) dial(addr string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	raw, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := service.DefaultDeadPeer.Apply(raw); err != nil {
		raw.Close()
		return nil, err
	}
	conn := raw
	if c.tls != nil {
		host, _, _ := net.SplitHostPort(addr)
		cfg, err := c.tls(host)
		if err != nil {
			raw.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.VerifyConnection = requireMaster
		tc := tls.Client(raw, cfg)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	}
	t := &trackedConn{Conn: conn, c: c}
	c.mu.Lock()
	c.conns[t] = struct{}{}
	c.mu.Unlock()
	return t, nil
}

// requireMaster refuses a verified peer certificate whose role is not
// master.
func requireMaster(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNotMaster
	}
	role, err := rpc.RoleOf(cs.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotMaster, err)
	}
	if role != rpc.RoleMaster {
		return fmt.Errorf("%w: certificate %q has role %s", ErrNotMaster, cs.PeerCertificates[0].Subject.CommonName, role)
	}
	return nil
}

// closeConns closes every connection open to the master, which ends a
// held renewal at once: fasthttp has no other way to abandon a request.
func (c *client) closeConns() {
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	// Outside the lock, which each Close takes to leave the set.
	for _, conn := range conns {
		conn.Close()
	}
}

// trackedConn leaves its client's set when closed.
type trackedConn struct {
	net.Conn
	c    *client
	once sync.Once
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return err
}

// call sends req to path and decodes the 2xx answer into answer (nil to
// ignore it), by deadline; a ctx that ends first closes the connections
// and so ends the request.
func (c *client) call(ctx context.Context, path string, req, answer any, deadline time.Time) error {
	err := c.roundTrip(ctx, path, req, answer, deadline)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return &MasterError{Master: c.url, Procedure: path, Err: err}
	}
	return nil
}

func (c *client) roundTrip(ctx context.Context, path string, body, answer any, deadline time.Time) error {
	data, err := rpc.Marshal(body)
	if err != nil {
		return err
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPut)
	// Always http: with TLS the connection dial made is already
	// encrypted, and fasthttp must not add TLS of its own.
	req.SetRequestURI("http://" + c.hc.Addr + path)
	req.Header.SetContentType("application/json")
	req.SetBody(data)
	stop := context.AfterFunc(ctx, c.closeConns)
	err = c.hc.DoDeadline(req, resp, deadline)
	stop()
	if err != nil {
		return err
	}
	status := resp.StatusCode()
	if status < 200 || status > 299 {
		rerr := rpc.DecodeErrorAnswer(status, resp.Body())
		if rerr.Kind == rpc.KindNotActive {
			return &NotActiveError{Active: string(resp.Header.Peek(rpc.HeaderActiveMaster)), Err: rerr}
		}
		return rerr
	}
	if answer == nil {
		return nil
	}
	// Unknown fields are skipped: a newer masterd may add some.
	if err := rpc.UnmarshalStrict(resp.Body(), answer, rpc.IgnoreUnknownFields); err != nil {
		return rpc.Errorf(rpc.KindInternal, "malformed answer: %v", err)
	}
	return nil
}
