package noded

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// maxPending bounds the connections being refused at once, and apart from
// them those waiting for a slot. Past it a connection over the limits is
// closed without a word: a client flooding noded with connections must
// not make it spend goroutines on them.
const maxPending = 64

// admission is the listener in front of noded's server. It admits at most
// maxTotal connections at once, and at most maxPerAddr from one IP address
// (IPv4 and IPv6 alike). It replaces fasthttp's own limits, which refuse
// from the accept loop with a blocking write (over TLS, after a handshake
// without a deadline), count IPv4 addresses only, and race with the
// server's shutdown.
//
// A connection over its address's share is answered busy (429) at once. A
// connection that finds noded full closes the oldest idle keep-alive
// connection to take its slot; with none idle it waits up to wait for a
// slot (the holders are active, or in their handshake or request head,
// which the server bounds) and is answered busy (503) if none frees. Every
// refusal and wait runs on a goroutine of its own, so Accept never stalls.
type admission struct {
	ln                   net.Listener
	maxTotal, maxPerAddr int
	wait                 time.Duration
	tls                  *tls.Config // nil: plain HTTP

	ready  chan net.Conn // admitted, for Accept
	failed chan error    // the listener's error, once
	// A token per connection being refused, and per connection waiting
	// for a slot: apart, so that refusals of one address over its share
	// cannot crowd out the connections that wait.
	refusing, waiting chan struct{}
	closed            chan struct{}

	// counts feeds /metrics; its zero value counts nothing.
	counts admissionCounts
	// log receives one short line per connection refused for speaking
	// the wrong protocol.
	log *slog.Logger

	mu      sync.Mutex
	perAddr map[netip.Addr]int
	conns   map[*admittedConn]struct{}
	freed   chan struct{} // closed and replaced each time a slot frees
}

func newAdmission(ln net.Listener, maxTotal, maxPerAddr int, wait time.Duration, tlsConfig *tls.Config, counts admissionCounts, log *slog.Logger) *admission {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &admission{
		counts:     counts,
		log:        log,
		ln:         ln,
		maxTotal:   maxTotal,
		maxPerAddr: maxPerAddr,
		wait:       wait,
		tls:        tlsConfig,
		ready:      make(chan net.Conn),
		failed:     make(chan error, 1),
		refusing:   make(chan struct{}, maxPending),
		waiting:    make(chan struct{}, maxPending),
		closed:     make(chan struct{}),
		perAddr:    make(map[netip.Addr]int),
		conns:      make(map[*admittedConn]struct{}),
		freed:      make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next admitted connection.
func (l *admission) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.failed:
		l.failed <- err // for the next caller
		return nil, err
	}
}

// Close stops accepting; connections already admitted stay open.
func (l *admission) Close() error {
	select {
	case <-l.closed:
		return nil
	default:
		close(l.closed)
	}
	return l.ln.Close()
}

// Addr is the listening address.
func (l *admission) Addr() net.Addr { return l.ln.Addr() }

func (l *admission) acceptLoop() {
	var delay time.Duration // back-off after a temporary failure
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if !temporary(err) {
				l.failed <- err
				return
			}
			// Out of descriptors or memory for a moment: wait and go on,
			// as net/http does, rather than end the daemon and its calls.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
				continue
			case <-l.closed:
				l.failed <- net.ErrClosed
				return
			}
		}
		delay = 0
		l.admitOrQueue(c)
	}
}

// temporary reports whether an Accept error passes by itself: a timeout,
// or the process or the system out of descriptors or buffer memory.
func temporary(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// admitOrQueue hands c to Accept if it fits, and otherwise makes room,
// waits or refuses on a goroutine.
func (l *admission) admitOrQueue(c net.Conn) {
	addr := remoteAddr(c)
	ac, status := l.admit(c, addr)
	if ac != nil {
		l.deliver(l.serverConn(ac))
		return
	}
	if status == http.StatusServiceUnavailable && tryTake(l.waiting) {
		go func() {
			ac, status := l.awaitSlot(c, addr)
			<-l.waiting
			if ac != nil {
				l.deliver(l.serverConn(ac))
				return
			}
			l.refuseAsync(c, status)
		}()
		return
	}
	l.refuseAsync(c, status)
}

// tryTake takes a token of tokens if one is free.
func tryTake(tokens chan struct{}) bool {
	select {
	case tokens <- struct{}{}:
		return true
	default:
		return false
	}
}

// refuseAsync answers c busy on a goroutine, or closes it at once when
// maxPending refusals are under way.
func (l *admission) refuseAsync(c net.Conn, status int) {
	l.counts.refused(status)
	if !tryTake(l.refusing) {
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		l.refuse(c, status)
	}()
}

// admit counts c, from addr, in and returns it wrapped, taking the slot
// of the oldest idle connection (which it closes) when noded is full; or
// it returns the status that refuses c.
func (l *admission) admit(c net.Conn, addr netip.Addr) (*admittedConn, int) {
	l.mu.Lock()
	if l.perAddr[addr] >= l.maxPerAddr {
		l.mu.Unlock()
		return nil, http.StatusTooManyRequests
	}
	var victim *admittedConn
	if len(l.conns) >= l.maxTotal {
		if victim = l.oldestIdle(); victim == nil {
			l.mu.Unlock()
			return nil, http.StatusServiceUnavailable
		}
		l.leaveLocked(victim)
	}
	ac := &admittedConn{
		SniffConn: service.SniffConn{Conn: c, ServesTLS: l.tls != nil, Daemon: "noded", Log: l.log},
		addr:      addr,
		owner:     l,
	}
	l.conns[ac] = struct{}{}
	l.perAddr[addr]++
	l.mu.Unlock()
	if victim != nil {
		inc(l.counts.idleClosed)
		victim.Close() // its slot is ac's already
	}
	return ac, 0
}

// oldestIdle is the admitted connection idle the longest, or nil.
func (l *admission) oldestIdle() *admittedConn {
	var oldest *admittedConn
	for c := range l.conns {
		if since := c.idleSince.Load(); since != 0 && (oldest == nil || since < oldest.idleSince.Load()) {
			oldest = c
		}
	}
	return oldest
}

// awaitSlot waits up to l.wait for a slot to free and takes it for c; or
// it returns the status that refuses c.
func (l *admission) awaitSlot(c net.Conn, addr netip.Addr) (*admittedConn, int) {
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	for {
		l.mu.Lock()
		freed := l.freed
		l.mu.Unlock()
		ac, status := l.admit(c, addr)
		if ac != nil || status == http.StatusTooManyRequests {
			return ac, status
		}
		select {
		case <-freed:
		case <-timer.C:
			return nil, status
		case <-l.closed:
			return nil, status
		}
	}
}

// serverConn is what the server reads and writes: the connection itself,
// or TLS over it.
func (l *admission) serverConn(ac *admittedConn) net.Conn {
	if l.tls != nil {
		return tls.Server(ac, l.tls)
	}
	return ac
}

func (l *admission) deliver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.closed:
		c.Close()
	}
}

// leave gives c's slot back, once.
func (l *admission) leave(c *admittedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaveLocked(c)
}

func (l *admission) leaveLocked(c *admittedConn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.perAddr[c.addr]--; l.perAddr[c.addr] <= 0 {
		delete(l.perAddr, c.addr)
	}
	close(l.freed)
	l.freed = make(chan struct{})
}

// closeAll closes every admitted connection, in its handshake, its
// request, or idle: the end of a shutdown.
func (l *admission) closeAll() {
	l.mu.Lock()
	conns := make([]*admittedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// connState is the server's ConnState hook: it tells admission which
// connections are idle between requests, and so may be closed to admit
// another.
func (l *admission) connState(c net.Conn, state fasthttp.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ac, ok := c.(*admittedConn)
	if !ok {
		return
	}
	switch state {
	case fasthttp.StateIdle:
		ac.idleSince.Store(time.Now().UnixNano())
	default:
		ac.idleSince.Store(0)
	}
}

// open is how many connections are admitted now.
func (l *admission) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// refuse answers c busy with status and closes it, within service.RefusalTimeout.
func (l *admission) refuse(c net.Conn, status int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(service.RefusalTimeout))
	rw := c
	if l.tls != nil {
		rw = tls.Server(c, l.tls)
	}
	service.WriteAndDrain(rw, refusal(status))
}

// refusal is the HTTP answer to a connection over a limit: kind busy, so
// that a master retries it with back-off.
func refusal(status int) []byte {
	msg := "noded serves as many connections as --max-conns allows; retry later"
	if status == http.StatusTooManyRequests {
		msg = "this address holds as many connections as --max-conns-per-ip allows; retry later"
	}
	return service.ClosingAnswer(status, rpc.KindBusy, msg, "Retry-After: 1\r\n")
}

// admissionCounts are the counters admission feeds: connections refused
// for their address's share or for a full noded, and idle ones closed to
// admit another. A nil counter counts nothing.
type admissionCounts struct {
	refusedPerAddr, refusedFull, idleClosed *metrics.Counter
}

func (c admissionCounts) refused(status int) {
	if status == http.StatusTooManyRequests {
		inc(c.refusedPerAddr)
	} else {
		inc(c.refusedFull)
	}
}

func inc(c *metrics.Counter) {
	if c != nil {
		c.Inc()
	}
}

// remoteAddr is the IP address c comes from, an IPv4 address mapped into
// IPv6 counted as the IPv4 one.
func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// admittedConn is a connection admission counts; its Close gives the slot
// back. Its first read checks that the client speaks what noded serves:
// TLS on a TLS port, plain HTTP on a plain one (service.SniffConn).
type admittedConn struct {
	service.SniffConn
	addr      netip.Addr
	owner     *admission
	idleSince atomic.Int64 // UnixNano since it is idle; 0 while active
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.owner.leave(c)
	return err
}
