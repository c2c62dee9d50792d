package nodetest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ProxyMode is what a [Proxy] does with the bytes it reads.
type ProxyMode int32

const (
	// ProxyPass forwards every byte at once.
	ProxyPass ProxyMode = iota
	// ProxyDelay forwards every chunk after the proxy's delay.
	ProxyDelay
	// ProxyStall accepts and reads every byte and forwards none: every
	// connection stays open, as across a network that drops packets.
	ProxyStall
	// ProxyReset forwards what the client sends; as soon as the server
	// answers, the client's connection is reset (RST) and the answer
	// dropped. The server did the work; the client never learns it.
	ProxyReset
	// ProxyCut resets every open connection at once and every new one
	// as soon as it is accepted, forwarding nothing: the server is cut
	// off and the client learns it at once, as when a route is gone.
	ProxyCut
)

// String is the mode's name, as tests name their cases.
func (m ProxyMode) String() string {
	return [...]string{"pass", "delay", "stall", "reset", "cut"}[m]
}

// Proxy is a TCP proxy on 127.0.0.1 between clients and one server,
// whose mode can change at any time; a change applies to every
// connection from its next chunk on (ProxyCut, at once). It only ever
// listens on and dials loopback addresses.
type Proxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	delay  atomic.Int64 // time.Duration of ProxyDelay
	done   chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted, resets atomic.Int64
}

// StartProxy listens on a free loopback port and forwards to target,
// which must be a loopback address, in mode ProxyPass. The test's
// cleanup closes it and waits for every goroutine it started.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("nodetest: proxy target %q is not a loopback address: the tests never leave this machine", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set switches the proxy to mode m; d is the delay of ProxyDelay.
func (p *Proxy) Set(m ProxyMode, d time.Duration) {
	p.delay.Store(int64(d))
	p.mode.Store(int32(m))
	if m == ProxyCut {
		p.mu.Lock()
		for c := range p.conns {
			resetConn(c)
		}
		p.mu.Unlock()
	}
}

// Accepted is the number of connections the proxy accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Resets is the number of answers ProxyReset replaced by a reset so far.
func (p *Proxy) Resets() int64 { return p.resets.Load() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		if ProxyMode(p.mode.Load()) == ProxyCut {
			resetConn(c)
			continue
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// resetConn closes c with a RST, not a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// track registers c to be closed by Close; false if the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serve joins the client connection to a new connection to the server.
func (p *Proxy) serve(client net.Conn) {
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	if ProxyMode(p.mode.Load()) == ProxyCut {
		// Cut while dialling: Set did not see these two.
		resetConn(client)
		resetConn(server)
		return
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			server.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		p.pump(server, client, nil)
		closeBoth()
	})
	wg.Go(func() {
		p.pump(client, server, client)
		closeBoth()
	})
	wg.Wait()
}

// pump copies src to dst chunk by chunk, as the mode says. resetOnData,
// if not nil, is the client's connection: pump carries the server's
// answers and resets it in mode ProxyReset.
func (p *Proxy) pump(dst, src net.Conn, resetOnData net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch ProxyMode(p.mode.Load()) {
			case ProxyPass:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			case ProxyDelay:
				t := time.NewTimer(time.Duration(p.delay.Load()))
				select {
				case <-t.C:
				case <-p.done:
					t.Stop()
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			case ProxyStall:
				// Read and dropped: the sender sees its bytes accepted.
			case ProxyReset:
				if resetOnData == nil {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
					break
				}
				// Counted before the reset: a client that sees it may
				// read Resets at once.
				p.resets.Add(1)
				resetConn(resetOnData)
				return
			case ProxyCut:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops accepting, closes every connection, and waits for every
// goroutine of the proxy. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
