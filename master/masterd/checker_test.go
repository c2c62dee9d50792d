package masterd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// holdingNode is a node that reads each request and answers none until
// the returned release is called, and then each at once, with a boot id
// no hello has: every check of a node there holds its worker until then.
// arrived receives one value per request read.
func holdingNode(t *testing.T) (node *nodetest.FakeNode, arrived <-chan struct{}, release func()) {
	t.Helper()
	got := make(chan struct{}, 1<<16)
	held := make(chan struct{})
	answer := nodetest.AnswerJSON(200, `{"version":"v","protocol":1,"boot_id":"elsewhere","pid":1}`)
	node = nodetest.StartFake(t, func(conn net.Conn, req *http.Request) bool {
		got <- struct{}{}
		<-held
		return answer(conn, req)
	})
	release = sync.OnceFunc(func() { close(held) })
	// Registered after the fake's own: runs before it waits for the
	// answers under way.
	t.Cleanup(release)
	return node, got, release
}

// awaitArrivals waits for n requests to arrive.
func awaitArrivals(t *testing.T, arrived <-chan struct{}, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("%d of %d checks reached the node within 20s", i, n)
		}
	}
}

// checkerGoroutines is how many goroutines run code of the checker.
func checkerGoroutines() int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if strings.Contains(g, "masterd.(*checker)") {
			n++
		}
	}
	return n
}

// TestHelloStormBoundsChecks checks that a storm of hellos, from nodes
// saying hello over and over with new boot ids and from many node
// names, while every check under way hangs, costs at most checksAtOnce
// goroutines: masterd started one per hello, each waiting for a slot,
// without bound. Once the node answers, every node is checked.
func TestHelloStormBoundsChecks(t *testing.T) {
	hole, arrived, release := holdingNode(t)
	base := serve(t, Config{Insecure: true, CheckNodes: true})
	c := &http.Client{Timeout: 20 * time.Second}
	// hello may run on a goroutine of its own: it does not end the test.
	hello := func(node, boot string) {
		req := helloOf(node, boot)
		req.URL = "http://" + hole.Addr
		put, err := http.NewRequest("PUT", base+rpc.PathHello, bytes.NewReader(mustJSON(t, req)))
		if err != nil {
			t.Error(err)
			return
		}
		resp, err := c.Do(put)
		if err != nil {
			t.Errorf("hello of %s: %v", node, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("hello of %s = %d %s", node, resp.StatusCode, clipped(body))
		}
	}
	for i := range checksAtOnce {
		hello(fmt.Sprintf("held-%d", i), "b")
	}
	awaitArrivals(t, arrived, checksAtOnce)

	const storm, senders = 400, 8
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := w; i < storm; i += senders {
				hello(fmt.Sprintf("flapping-%d", w), fmt.Sprintf("boot-%d", i))
				hello(fmt.Sprintf("many-%d", i), "b")
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if n := checkerGoroutines(); n > checksAtOnce {
		t.Errorf("after %d hellos while every check hangs: %d goroutines of the checker, want at most %d", 2*storm, n, checksAtOnce)
	}

	release()
	deadline := time.Now().Add(30 * time.Second)
	for {
		unchecked := 0
		for _, n := range listed(t, c, base) {
			if n.Problem == "" {
				unchecked++
			}
		}
		if unchecked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d nodes still unchecked 30s after their node answered", unchecked)
		}
		time.Sleep(20 * time.Millisecond) // the checks run on their own; nothing to wait on
	}
}

// TestCheckerCoalesces checks the rules of the checks' queue: a hello
// during its node's check cancels the check and has the node checked
// again at once; a node has one check waiting, that of its last hello,
// whatever the number of its hellos (none is made of the earlier ones);
// past the backlog a node is left unchecked with a problem saying so,
// in one log line however many, and another when the checks caught up.
func TestCheckerCoalesces(t *testing.T) {
	hole, arrived, release := holdingNode(t)
	const boot = "live"
	live := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"version":"v","protocol":1,"boot_id":"`+boot+`","pid":1}`))
	stale := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"version":"v","protocol":1,"boot_id":"stale","pid":1}`))
	ms, _, _ := newTestMembers(t, t.TempDir())
	var log nodetest.SyncBuffer
	d := &Daemon{log: slog.New(slog.NewTextHandler(&log, nil))}
	c := newChecker(d, ms)
	c.backlog = checksAtOnce + 20
	t.Cleanup(c.stop)
	ms.joined = c.start
	hello := func(node, url, boot string) {
		t.Helper()
		req := helloOf(node, boot)
		req.URL = "http://" + url
		mustHello(t, ms, req)
	}
	// await polls node until what masterd found of it is in.
	await := func(node string) rpc.Node {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			n, err := ms.get(node)
			if err != nil {
				t.Fatal(err)
			}
			if n.Reachable || n.Problem != "" {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not checked within 20s", node)
			}
			time.Sleep(5 * time.Millisecond) // the checks run on their own; nothing to wait on
		}
	}

	for i := range checksAtOnce {
		hello(fmt.Sprintf("held-%d", i), hole.Addr, "b")
	}
	awaitArrivals(t, arrived, checksAtOnce)
	// The node moved while its check hangs: that check is ended and
	// the node checked where it is now.
	hello("held-0", live.Addr, boot)
	if n := await("held-0"); !n.Reachable {
		t.Fatalf("held-0, said hello again during its check: problem %q, want it checked again at once, reachable", n.Problem)
	}
	hello("held-again", hole.Addr, "b")
	awaitArrivals(t, arrived, 1)

	for i := range 50 {
		hello("x", stale.Addr, fmt.Sprintf("old-%d", i))
	}
	hello("x", live.Addr, boot)
	c.mu.Lock()
	queued, x := len(c.queue), *c.nodes["x"]
	c.mu.Unlock()
	if queued != 1 || x.url != "http://"+live.Addr || x.bootID != boot {
		t.Fatalf("after 51 hellos of x while every worker is busy: %d checks queued, x's at %s with %s; want 1, of the last hello", queued, x.url, x.bootID)
	}

	for i := range c.backlog - checksAtOnce - 1 {
		hello(fmt.Sprintf("y-%d", i), hole.Addr, "b")
	}
	hello("z1", hole.Addr, "b")
	hello("z2", hole.Addr, "b")
	for _, z := range []string{"z1", "z2"} {
		if n, _ := ms.get(z); !strings.HasPrefix(n.Problem, "not checked: ") {
			t.Errorf("%s, said hello past the backlog: problem %q, want not checked", z, n.Problem)
		}
	}
	if got := strings.Count(log.String(), "too many nodes wait"); got != 1 {
		t.Errorf("%d log lines of nodes left unchecked, want 1:\n%s", got, log.String())
	}

	release()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		idle := len(c.nodes) == 0 && c.workers == 0
		c.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("checks still under way 20s after the node answered")
		}
		time.Sleep(5 * time.Millisecond) // the checks run on their own; nothing to wait on
	}
	if n := await("x"); !n.Reachable {
		t.Errorf("x: problem %q, want it checked at the URL of its last hello, reachable", n.Problem)
	}
	if got := stale.Conns.Load(); got != 0 {
		t.Errorf("the URL of x's earlier hellos was called %d times, want never", got)
	}
	if !strings.Contains(log.String(), "hellos_unchecked=2") {
		t.Errorf("no log line of the checks caught up, with the 2 hellos left unchecked:\n%s", log.String())
	}
	hello("z1", live.Addr, boot)
	if n := await("z1"); !n.Reachable {
		t.Errorf("z1, said hello again once the checks caught up: problem %q, want it checked", n.Problem)
	}
}

// TestCheckerNeverCallsHTTPUnderTLS checks that masterd serving TLS
// never calls a node in the clear, should an http:// URL reach the
// check: masters call nodes over mutual TLS only.
func TestCheckerNeverCallsHTTPUnderTLS(t *testing.T) {
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	d, err := New(Config{Cert: crt, Key: key, ClientCA: pki.CA(), Listen: "127.0.0.1:0", StateDir: t.TempDir(),
		SessionTimeout: DefaultSessionTimeout, MaxSessionTimeout: DefaultSessionTimeout, MaxConns: DefaultMaxConns, HeadTimeout: DefaultHeadTimeout,
		LogFormat: "text", LogLevel: "info"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	node := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"version":"v","protocol":1,"boot_id":"b","pid":1}`))
	c := &checker{d: d}
	problem := c.call(context.Background(), "http://"+node.Addr, "b")
	if !strings.Contains(problem, "http://") || node.Conns.Load() != 0 {
		t.Errorf("check of an http:// node by masterd serving TLS = %q after %d connections; want a problem, no connection", problem, node.Conns.Load())
	}
}
