package noded

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// admitted collects the connections an admission listener hands out.
type admitted struct {
	ln    *admission
	conns chan net.Conn
}

func listenAdmission(t *testing.T, network, addr string, total, perAddr int) *admitted {
	t.Helper()
	raw, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listening on %s %s: %v", network, addr, err)
	}
	return serveAdmission(t, newAdmission(raw, total, perAddr, time.Second, nil, admissionCounts{}, nil))
}

// serveAdmission accepts from ln until the test ends, then closes ln and
// every connection it handed out.
func serveAdmission(t *testing.T, ln *admission) *admitted {
	a := &admitted{ln: ln, conns: make(chan net.Conn, 100)}
	go func() {
		for {
			c, err := a.ln.Accept()
			if err != nil {
				close(a.conns)
				return
			}
			a.conns <- c
		}
	}()
	t.Cleanup(func() {
		a.ln.Close()
		for c := range a.conns {
			c.Close()
		}
	})
	return a
}

// expectAdmitted waits for the listener to hand out one connection.
func (a *admitted) expectAdmitted(t *testing.T, what string) net.Conn {
	t.Helper()
	select {
	case c := <-a.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no connection admitted within 10s", what)
		return nil
	}
}

// refusedWith reads the answer on a refused connection and returns its
// status code.
func refusedWith(t *testing.T, c net.Conn) int {
	t.Helper()
	status, kind := nodetest.ReadAnswer(t, c, 10*time.Second)
	if kind != rpc.KindBusy {
		t.Errorf("refusal with status %d has an error of kind %q, want busy", status, kind)
	}
	return status
}

func TestAdmissionPerAddressIPv6(t *testing.T) {
	a := listenAdmission(t, "tcp6", "[::1]:0", 100, 4)
	addr := a.ln.Addr().String()
	var conns []net.Conn
	for i := range 10 {
		conns = append(conns, nodetest.DialFrom(t, "::1", addr))
		if i < 4 {
			a.expectAdmitted(t, "connection within the per-address limit")
		}
	}
	for _, c := range conns[4:] {
		if got := refusedWith(t, c); got != http.StatusTooManyRequests {
			t.Errorf("connection over the per-address limit from ::1 answered %d, want 429", got)
		}
	}
}

func TestAdmissionPerAddressIPv4(t *testing.T) {
	a := listenAdmission(t, "tcp4", "127.0.0.1:0", 100, 2)
	addr := a.ln.Addr().String()
	nodetest.DialFrom(t, "127.0.0.2", addr)
	first := a.expectAdmitted(t, "first from 127.0.0.2")
	nodetest.DialFrom(t, "127.0.0.2", addr)
	a.expectAdmitted(t, "second from 127.0.0.2")
	over := nodetest.DialFrom(t, "127.0.0.2", addr)
	if got := refusedWith(t, over); got != http.StatusTooManyRequests {
		t.Errorf("third connection from 127.0.0.2 answered %d, want 429", got)
	}
	// Another address has a share of its own.
	nodetest.DialFrom(t, "127.0.0.3", addr)
	a.expectAdmitted(t, "first from 127.0.0.3")
	// A closed connection gives its slot back.
	first.Close()
	nodetest.DialFrom(t, "127.0.0.2", addr)
	a.expectAdmitted(t, "127.0.0.2 after one of its connections closed")
}

func TestAdmissionTotal(t *testing.T) {
	a := listenAdmission(t, "tcp4", "127.0.0.1:0", 3, 100)
	addr := a.ln.Addr().String()
	for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		nodetest.DialFrom(t, from, addr)
		a.expectAdmitted(t, "connection "+from)
	}
	if got := refusedWith(t, nodetest.DialFrom(t, "127.0.0.5", addr)); got != http.StatusServiceUnavailable {
		t.Errorf("connection past --max-conns answered %d, want 503", got)
	}
}

// Connections that find noded full wait for a slot on goroutines of their
// own, silent TLS ones included, and never hold up the accept loop: an
// address over its share is still answered at once, and a freed slot
// goes to a waiting connection.
func TestAdmissionWaitsOffTheAcceptLoop(t *testing.T) {
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := serveAdmission(t, newAdmission(raw, 1, 1, time.Minute, testTLSConfig(t), admissionCounts{}, nil))
	addr := a.ln.Addr().String()
	nodetest.DialFrom(t, "127.0.0.2", addr)
	held := a.expectAdmitted(t, "the one connection allowed")
	for _, from := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		nodetest.DialFrom(t, from, addr) // silent, waiting for a slot
	}
	over := tls.Client(nodetest.DialFrom(t, "127.0.0.2", addr), &tls.Config{InsecureSkipVerify: true})
	if got := refusedWith(t, over); got != http.StatusTooManyRequests {
		t.Errorf("second connection from 127.0.0.2 answered %d, want 429", got)
	}
	held.Close()
	c := a.expectAdmitted(t, "a waiting connection once the slot freed")
	if from := remoteAddr(c.(*tls.Conn).NetConn()).String(); from == "127.0.0.2" {
		t.Errorf("the freed slot went to %s, want one of the waiting connections", from)
	}
}

// At the limit, the oldest idle keep-alive connection is closed to admit
// a new one.
func TestAdmissionClosesTheOldestIdle(t *testing.T) {
	a := listenAdmission(t, "tcp4", "127.0.0.1:0", 2, 100)
	addr := a.ln.Addr().String()
	first := nodetest.DialFrom(t, "127.0.0.2", addr)
	c1 := a.expectAdmitted(t, "first")
	nodetest.DialFrom(t, "127.0.0.3", addr)
	c2 := a.expectAdmitted(t, "second")
	a.ln.connState(c1, fasthttp.StateIdle)
	a.ln.connState(c2, fasthttp.StateIdle)
	a.ln.connState(c2, fasthttp.StateActive) // busy again: not to be closed
	nodetest.DialFrom(t, "127.0.0.4", addr)
	a.expectAdmitted(t, "a third connection while the first is idle")
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := first.Read(make([]byte, 1)); err == nil {
		t.Errorf("the idle connection read %d bytes after the third was admitted, want it closed", n)
	}
}

// testTLSConfig is a server configuration with a node certificate of a
// test CA: the refusal path only needs some handshake to run.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	files := nodetest.NewPKI(t).NodeTLS(t, "localhost")
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}
