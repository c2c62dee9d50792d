package nodetest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// startEcho serves lines back on a loopback port until the test ends.
func startEcho(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line on c and reads it back within d.
func roundTrip(c net.Conn, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line != "ping\n" {
		return errors.New("echoed " + line)
	}
	return err
}

// TestProxyModes drives one echo server through the proxy in each mode:
// pass and delay echo, stall holds the connection open and silent,
// reset resets the client at the answer, cut resets open connections at
// once and new ones as they come, and pass again serves new ones.
func TestProxyModes(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	open := dial()
	if err := roundTrip(open, 5*time.Second); err != nil {
		t.Fatalf("pass: %v", err)
	}

	const d = 100 * time.Millisecond
	p.Set(ProxyDelay, d)
	start := time.Now()
	if err := roundTrip(open, 5*time.Second); err != nil {
		t.Fatalf("delay: %v", err)
	}
	if rtt := time.Since(start); rtt < 2*d {
		t.Errorf("delay: a round trip took %s, want at least %s", rtt, 2*d)
	}

	p.Set(ProxyStall, 0)
	if err := roundTrip(open, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stall: round trip = %v, want the read's deadline exceeded", err)
	}

	p.Set(ProxyReset, 0)
	if err := roundTrip(dial(), 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("reset: round trip = %v, want the connection reset", err)
	}
	if p.Resets() == 0 {
		t.Errorf("reset: Resets() = 0 after an answer was reset")
	}

	p.Set(ProxyPass, 0)
	open = dial()
	if err := roundTrip(open, 5*time.Second); err != nil {
		t.Fatalf("pass: %v", err)
	}
	p.Set(ProxyCut, 0)
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("cut: a read on an open connection = %v, want it reset at once", err)
	}
	// The reset may come before the dial returns, or after.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c.Close()
		if err := roundTrip(c, 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("cut: round trip on a new connection = %v, want it reset", err)
		}
	}

	p.Set(ProxyPass, 0)
	if err := roundTrip(dial(), 5*time.Second); err != nil {
		t.Errorf("pass after cut: %v", err)
	}
	if p.Accepted() != 5 {
		t.Errorf("Accepted() = %d, want 5", p.Accepted())
	}
}
