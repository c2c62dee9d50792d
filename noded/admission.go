package noded

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// refusalTimeout bounds the work spent on a connection that is refused:
// its TLS handshake and the write of the refusal.
const refusalTimeout = 2 * time.Second

// maxRefusing bounds the connections being refused at once. Past it a
// refused connection is closed without a word: a client flooding noded
// with connections must not make it spend goroutines on answering them.
const maxRefusing = 64

// admission is the listener in front of noded's server: it admits at most
// maxTotal connections at once, and at most maxPerAddr from one IP address
// (IPv4 and IPv6 alike). It replaces fasthttp's own limits, which refuse
// from the accept loop with a blocking write (over TLS, after a handshake
// without a deadline), count IPv4 addresses only, and race with the
// server's shutdown.
//
// A refused connection is answered busy on a goroutine of its own with
// refusalTimeout for all of it (429 when its address is over its share,
// 503 when noded is full) and closed; Accept goes on at once.
type admission struct {
	net.Listener
	maxTotal, maxPerAddr int
	tls                  *tls.Config // nil: plain HTTP

	mu       sync.Mutex
	total    int
	perAddr  map[netip.Addr]int
	refusing chan struct{} // a token per refusal under way
}

func newAdmission(ln net.Listener, maxTotal, maxPerAddr int, tlsConfig *tls.Config) *admission {
	return &admission{
		Listener:   ln,
		maxTotal:   maxTotal,
		maxPerAddr: maxPerAddr,
		tls:        tlsConfig,
		perAddr:    make(map[netip.Addr]int),
		refusing:   make(chan struct{}, maxRefusing),
	}
}

// Accept returns the next connection within the limits; the others are
// refused without holding up the accept loop.
func (l *admission) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteAddr(c)
		status := l.admit(addr)
		if status == 0 {
			ac := &admittedConn{Conn: c}
			ac.release = func() { l.leave(addr) }
			if l.tls != nil {
				return tls.Server(ac, l.tls), nil
			}
			return ac, nil
		}
		l.refuse(c, status)
	}
}

// admit counts a connection from addr in, or returns the status that
// refuses it.
func (l *admission) admit(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.maxTotal:
		return http.StatusServiceUnavailable
	case l.perAddr[addr] >= l.maxPerAddr:
		return http.StatusTooManyRequests
	}
	l.total++
	l.perAddr[addr]++
	return 0
}

func (l *admission) leave(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perAddr[addr]--; l.perAddr[addr] <= 0 {
		delete(l.perAddr, addr)
	}
}

// refuse answers c busy with status, on a goroutine, and closes it.
func (l *admission) refuse(c net.Conn, status int) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refusalTimeout))
		if l.tls != nil {
			c = tls.Server(c, l.tls)
		}
		c.Write(refusal(status))
	}()
}

// refusal is the HTTP answer to a connection over a limit: kind busy, so
// that a master retries it with back-off.
func refusal(status int) []byte {
	msg := "noded serves as many connections as --max-conns allows; retry later"
	if status == http.StatusTooManyRequests {
		msg = "this address holds as many connections as --max-conns-per-ip allows; retry later"
	}
	body, _ := json.Marshal(rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindBusy, "%s", msg)}) // plain strings: cannot fail
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// remoteAddr is the IP address c comes from, an IPv4 address mapped into
// IPv6 counted as the IPv4 one.
func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// admittedConn gives its slot back when it is closed, once.
type admittedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
