package noded

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
	a := &admitted{ln: newAdmission(raw, total, perAddr, nil), conns: make(chan net.Conn, 100)}
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

// dial connects from the local address from (empty: any) and returns the
// connection.
func dial(t *testing.T, from, to string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatalf("dialing %s from %q: %v", to, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the refusal from %s: %v", c.LocalAddr(), err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&body)
	if !strings.Contains(body.String(), `"kind":"busy"`) {
		t.Errorf("refusal with status %d has body %q, want kind busy", resp.StatusCode, body.String())
	}
	return resp.StatusCode
}

func TestAdmissionPerAddressIPv6(t *testing.T) {
	a := listenAdmission(t, "tcp6", "[::1]:0", 100, 4)
	addr := a.ln.Addr().String()
	var conns []net.Conn
	for i := range 10 {
		conns = append(conns, dial(t, "::1", addr))
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
	dial(t, "127.0.0.2", addr)
	first := a.expectAdmitted(t, "first from 127.0.0.2")
	dial(t, "127.0.0.2", addr)
	a.expectAdmitted(t, "second from 127.0.0.2")
	over := dial(t, "127.0.0.2", addr)
	if got := refusedWith(t, over); got != http.StatusTooManyRequests {
		t.Errorf("third connection from 127.0.0.2 answered %d, want 429", got)
	}
	// Another address has a share of its own.
	dial(t, "127.0.0.3", addr)
	a.expectAdmitted(t, "first from 127.0.0.3")
	// A closed connection gives its slot back.
	first.Close()
	dial(t, "127.0.0.2", addr)
	a.expectAdmitted(t, "127.0.0.2 after one of its connections closed")
}

func TestAdmissionTotal(t *testing.T) {
	a := listenAdmission(t, "tcp4", "127.0.0.1:0", 3, 100)
	addr := a.ln.Addr().String()
	for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		dial(t, from, addr)
		a.expectAdmitted(t, "connection "+from)
	}
	if got := refusedWith(t, dial(t, "127.0.0.5", addr)); got != http.StatusServiceUnavailable {
		t.Errorf("connection past --max-conns answered %d, want 503", got)
	}
}

// A refused TLS connection that never sends its hello costs a goroutine
// for refusalTimeout at most, and never holds up the accept loop.
func TestAdmissionRefusalDoesNotBlockAccept(t *testing.T) {
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &admitted{ln: newAdmission(raw, 1, 100, testTLSConfig(t)), conns: make(chan net.Conn, 100)}
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
	addr := a.ln.Addr().String()
	dial(t, "127.0.0.2", addr)
	held := a.expectAdmitted(t, "the one connection allowed")
	// Over the limit, silent: its refusal waits for a TLS hello that
	// never comes.
	for range 10 {
		dial(t, "127.0.0.3", addr)
	}
	held.Close()
	dial(t, "127.0.0.4", addr)
	a.expectAdmitted(t, "a new connection while silent ones are being refused")
}

// testTLSConfig is a server configuration with a throwaway self-signed
// certificate: the refusal path only needs some handshake to run.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
