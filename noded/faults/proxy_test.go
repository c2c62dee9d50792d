//go:build fault

package faults

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
)

// proxyMode is what the proxy does with the bytes it reads.
type proxyMode int32

const (
	// pass forwards every byte at once.
	pass proxyMode = iota
	// delay forwards every chunk after the proxy's delay.
	delay
	// stall accepts and reads every byte and forwards none.
	stall
	// reset forwards what the client sends; as soon as the node answers,
	// the client's connection is reset (RST) and the answer dropped. The
	// node did the work; the client never learns it.
	reset
)

func (m proxyMode) String() string {
	return [...]string{"pass", "delay", "stall", "reset"}[m]
}

// proxy is a TCP proxy on 127.0.0.1 between a client and one node, whose
// mode can change at any time; a change applies to every connection from
// its next chunk on. It only ever listens on and dials loopback addresses.
type proxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	delay  atomic.Int64 // time.Duration of mode delay
	done   chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted, resets atomic.Int64
}

// startProxy listens on a free loopback port and forwards to target, which
// must be a loopback address. The test's cleanup closes it and waits for
// every goroutine it started.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("proxy target %q is not a loopback address: the suite never leaves this machine", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Addr is the address clients dial.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// set switches the proxy to mode m; d is the delay of mode delay.
func (p *proxy) set(m proxyMode, d time.Duration) {
	p.delay.Store(int64(d))
	p.mode.Store(int32(m))
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track registers c to be closed by close; false if the proxy is closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serve joins the client connection to a new connection to the node.
func (p *proxy) serve(client net.Conn) {
	defer p.untrack(client)
	node, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(node) {
		return
	}
	defer p.untrack(node)
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			node.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		p.pump(node, client, nil)
		closeBoth()
	})
	wg.Go(func() {
		p.pump(client, node, client)
		closeBoth()
	})
	wg.Wait()
}

// pump copies src to dst chunk by chunk, as the mode says. resetOnData,
// if not nil, is the client's connection: pump carries the node's answers
// and resets it in mode reset.
func (p *proxy) pump(dst, src net.Conn, resetOnData net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch proxyMode(p.mode.Load()) {
			case pass:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			case delay:
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
			case stall:
				// Read and dropped: the sender sees its bytes accepted.
			case reset:
				if resetOnData == nil {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
					break
				}
				if tc, ok := resetOnData.(*net.TCPConn); ok {
					tc.SetLinger(0) // close with RST, not FIN
				}
				resetOnData.Close()
				p.resets.Add(1)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops accepting, closes every connection, and waits for every
// goroutine of the proxy.
func (p *proxy) close() {
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

// TestNetworkFaults puts a TCP proxy on 127.0.0.1 between the client and
// noded and drives calls through it in each of its modes:
//   - pass: the load succeeds as without the proxy;
//   - delay (150ms per chunk each way, within the socket timeout): the
//     load succeeds, only slower;
//   - stall: every call in flight and every start sent is reported
//     unreachable within MaxElapsed, and resumes once the proxy passes
//     again, having run once;
//   - reset: the node receives the requests and its answers are replaced
//     by a reset; starts are retried with their request_id and reported
//     unreachable, and once the proxy passes again the replayed start
//     answers the call the node already ran, which ran once.
func TestNetworkFaults(t *testing.T) {
	const timeout, maxElapsed = time.Second, 3 * time.Second
	for _, mode := range []proxyMode{pass, delay, stall, reset} {
		t.Run(mode.String(), func(t *testing.T) {
			n := startNode(t, "--shutdown-grace", "1s", "--warm", "2")
			p := startProxy(t, n.Addr())
			c := newClient(t, p.Addr(), timeout, master.Policy{MaxElapsed: maxElapsed})
			calm := newClient(t, p.Addr(), calmTimeout, master.Policy{})
			l := newLedger()
			series := idleSeries{baseline: idle(t, n, 0)}
			var (
				faults  string
				allowed = []outcome{succeeded, cancelled}
			)
			switch mode {
			case pass, delay:
				const d = 150 * time.Millisecond
				sc := pick(scale{rounds: 2, calls: 32, concurrency: 8}, scale{rounds: 8, calls: 120, concurrency: 16})
				if mode == delay {
					p.set(delay, d)
				}
				series.loadRounds(t, n, calm, l, sc, 0.1)
				faults = fmt.Sprintf("%d rounds × %d at once through the proxy; %d connections", sc.rounds, sc.concurrency, p.accepted.Load())
				if mode == delay {
					start := time.Now()
					if _, err := calm.Version(t.Context()); err != nil {
						t.Fatal(err)
					}
					if rtt := time.Since(start); rtt < 2*d {
						t.Errorf("a Version round trip through the delaying proxy took %s, want at least %s: the delay was not applied", rtt, 2*d)
					}
					faults = fmt.Sprintf("%s delay each way; ", d) + faults
				}
			case stall, reset:
				sc := pick(scale{rounds: 2, calls: 6}, scale{rounds: 8, calls: 16})
				var st outageStats
				for r := 1; r <= sc.rounds; r++ {
					outageRound(t, c, calm, l, fmt.Sprintf("r%d", r), sc.calls, maxElapsed,
						func() { p.set(mode, 0) },
						func() { p.set(pass, 0) }, &st)
					c.Close()
					calm.Close()
					series.rounds = append(series.rounds, idle(t, n, series.baseline.fds))
				}
				allowed = []outcome{unreachable, succeeded}
				faults = fmt.Sprintf("%d %s phases, each with %d calls running and %d starts sent into it; socket timeout %s, MaxElapsed %s; slowest report %s",
					st.faults, mode, sc.calls, sc.calls, timeout, maxElapsed, st.worst.Round(10*time.Millisecond))
				if mode == reset {
					if p.resets.Load() == 0 {
						t.Errorf("the proxy reset no connection")
					}
					faults += fmt.Sprintf("; %d answers reset", p.resets.Load())
				}
			}
			ta := l.check(t, n, nil, allowed...)
			series.checkGrowth(t, steady)
			left, zombies := waitNoLeftovers(n, 5*time.Second)
			report(t, row{
				scenario: "TCP proxy, mode " + mode.String(),
				calls:    ta.calls,
				faults:   faults,
				outcomes: ta.outcomes(),
				dups:     ta.dups,
				left:     len(left),
				zombies:  len(zombies),
				idle:     series.String(),
			})
		})
	}
}
