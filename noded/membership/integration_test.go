package membership_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/noded/membership"
	"github.com/noderpc/noderpc/rpc"
)

func TestMain(m *testing.M) { nodetest.Main(m) }

// masterd is one master daemon of a test (the harness's), with a client
// that lists its nodes.
type masterd struct {
	*nodetest.Masterd
	t      *testing.T
	client *http.Client
}

// startMasterd starts masterd on a free loopback port, plain HTTP
// without pki, else with a master certificate of p; flags come last.
func startMasterd(t *testing.T, p *nodetest.PKI, flags ...string) *masterd {
	t.Helper()
	opts := nodetest.MasterdOptions{Flags: flags}
	m := &masterd{t: t, client: &http.Client{Timeout: 10 * time.Second}}
	if p != nil {
		crt, key := p.Issue(t, rpc.RoleMaster, "master")
		opts.TLS = &nodetest.TLS{Cert: crt, Key: key, ClientCA: p.CA()}
		m.client.Transport = &http.Transport{TLSClientConfig: observerTLS(t, p)}
	}
	m.Masterd = nodetest.StartMasterd(t, opts)
	return m
}

// observerTLS is a client configuration of the observer role, which may
// list nodes.
func observerTLS(t *testing.T, p *nodetest.PKI) *tls.Config {
	t.Helper()
	crt, key := p.Issue(t, rpc.RoleObserver, "observer")
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(p.CA())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS13}
}

// nodes lists the nodes masterd knows.
func (m *masterd) nodes() (rpc.ListNodesResponse, error) {
	var list rpc.ListNodesResponse
	resp, err := m.client.Get(m.URL() + rpc.PathListNodes)
	if err != nil {
		return list, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return list, err
	}
	if resp.StatusCode != http.StatusOK {
		return list, fmt.Errorf("GET %s: %s: %s", rpc.PathListNodes, resp.Status, body)
	}
	return list, rpc.UnmarshalStrict(body, &list, rpc.IgnoreUnknownFields)
}

// node returns what masterd knows of name, if anything.
func (m *masterd) node(name string) (rpc.Node, uint64, bool) {
	list, err := m.nodes()
	if err != nil {
		m.t.Fatalf("listing the nodes of masterd: %v", err)
	}
	for _, n := range list.Nodes {
		if n.Name == name {
			return n, list.GroupVersion, true
		}
	}
	return rpc.Node{}, list.GroupVersion, false
}

// awaitNode polls masterd's list until node name satisfies ok, and
// returns it; the test fails past within.
func (m *masterd) awaitNode(name, what string, within time.Duration, ok func(rpc.Node) bool) rpc.Node {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, _, found := m.node(name)
		if found && ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("masterd: node %s not %s within %s; it lists %+v (found: %v); masterd's log:\n%s", name, what, within, n, found, m.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling masterd's list, which has no event to wait on
	}
}

func up(n rpc.Node) bool   { return n.State == rpc.NodeUp }
func down(n rpc.Node) bool { return n.State == rpc.NodeDown }

// startNode starts noded joined to masters under name.
func startNode(t *testing.T, name string, tlsFiles *nodetest.TLS, masters ...string) *nodetest.Node {
	t.Helper()
	flags := []string{"--node-name", name}
	for _, m := range masters {
		flags = append(flags, "--master", m)
	}
	return nodetest.Start(t, nodetest.Options{Flags: flags, TLS: tlsFiles})
}

// sessionHeld waits until noded reports a session held (1) or not (0).
func sessionHeld(t *testing.T, n *nodetest.Node, want float64) {
	t.Helper()
	n.AwaitMetric(t, "noded_master_session", fmt.Sprintf("%v", want), func(v float64) bool { return v == want })
}

// A node joins with its facts, and its renewals keep it up well past
// the session timeout.
func TestNodeJoinsAndRenews(t *testing.T) {
	const timeout = time.Second
	md := startMasterd(t, nil, "--session-timeout", timeout.String())
	n := startNode(t, "node1", nil, md.URL())
	got := md.awaitNode("node1", "up", 20*time.Second, up)
	if want := "http://" + n.Addr(); got.URL != want {
		t.Errorf("masterd lists node1 at %q, want the address it serves on, %q", got.URL, want)
	}
	if got.Version != rpc.Version || got.Protocol != rpc.ProtocolVersion || got.BootID == "" {
		t.Errorf("masterd lists node1 with version %q, protocol %d, boot id %q; want %q, %d and a boot id", got.Version, got.Protocol, got.BootID, rpc.Version, rpc.ProtocolVersion)
	}
	if got.SessionTimeout != timeout.Seconds() {
		t.Errorf("session timeout = %vs, want masterd's default %v", got.SessionTimeout, timeout)
	}
	sessionHeld(t, n, 1)
	line := n.AwaitLogLine(t, "joined the group", "master="+md.URL(), "session_timeout=1s")
	if !strings.Contains(line, "group_version=") {
		t.Errorf("the join line has no group version: %s", line)
	}
	// Renewals are what keep it up: three timeouts later it was heard
	// from within the last timeout and never went down.
	joined := got.Joined
	renewed := md.awaitNode("node1", "renewed three session timeouts after its join", 20*time.Second, func(n rpc.Node) bool {
		return n.LastContact.Sub(joined) > 3*timeout
	})
	if renewed.State != rpc.NodeUp || !renewed.Joined.Equal(joined) {
		t.Errorf("after renewals node1 is %s, joined %v; want up in the session joined at %v", renewed.State, renewed.Joined, joined)
	}
	if lines := strings.Count(n.Log(), "joined the group"); lines != 1 {
		t.Errorf("noded logged %d joins, want 1; its log:\n%s", lines, n.Log())
	}
}

// A node whose master stops logs the loss once, keeps saying hello, and
// joins again when masterd is back on the same address.
func TestNodeRejoinsRestartedMaster(t *testing.T) {
	md := startMasterd(t, nil, "--session-timeout", "2s")
	n := startNode(t, "node1", nil, md.URL())
	first := md.awaitNode("node1", "up", 20*time.Second, up)
	sessionHeld(t, n, 1)

	if err := md.Stop(); err != nil {
		t.Fatal(err)
	}
	n.AwaitLogLine(t, "lost the session", "master="+md.URL())
	sessionHeld(t, n, 0)
	if err := md.Relaunch(); err != nil {
		t.Fatal(err)
	}
	again := md.awaitNode("node1", "up again", 30*time.Second, func(x rpc.Node) bool { return up(x) && x.Joined.After(first.Joined) })
	if again.BootID != first.BootID {
		t.Errorf("node1 said hello again with boot id %s, want its own %s (noded did not restart)", again.BootID, first.BootID)
	}
	sessionHeld(t, n, 1)
	log := n.Log()
	if got := strings.Count(log, "joined the group"); got != 2 {
		t.Errorf("noded logged %d joins, want 2; its log:\n%s", got, log)
	}
	if got := strings.Count(log, "lost the session"); got != 1 {
		t.Errorf("noded logged the loss %d times, want once; its log:\n%s", got, log)
	}
}

// With two masters in its list, one of them a closed port, a node joins
// the live one whatever order it tries them in.
func TestNodeJoinsTheLiveOfTwoMasters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	md := startMasterd(t, nil)
	for _, name := range []string{"node1", "node2", "node3"} {
		n := startNode(t, name, nil, dead, md.URL())
		md.awaitNode(name, "up", 20*time.Second, up)
		n.AwaitLogLine(t, "joined the group", "master="+md.URL())
	}
}

// SIGTERM sends a leave: masterd lists the node down at once, long
// before its session would lapse.
func TestNodeLeavesOnSIGTERM(t *testing.T) {
	md := startMasterd(t, nil, "--session-timeout", "60s")
	n := startNode(t, "node1", nil, md.URL())
	md.awaitNode("node1", "up", 20*time.Second, up)
	_, before, _ := md.node("node1")
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.LogLine("left the group", "master="+md.URL()); !ok {
		t.Errorf("noded did not log its leave; its log:\n%s", n.Log())
	}
	md.awaitNode("node1", "down", 5*time.Second, down)
	if _, after, _ := md.node("node1"); after <= before {
		t.Errorf("group version %d after the leave, want above %d", after, before)
	}
}

// A master that does not answer the leave (stopped) delays noded's
// shutdown by the leave's bound only.
func TestLeaveToAStoppedMasterIsBounded(t *testing.T) {
	md := startMasterd(t, nil, "--session-timeout", "60s")
	n := startNode(t, "node1", nil, md.URL())
	md.awaitNode("node1", "up", 20*time.Second, up)
	sessionHeld(t, n, 1)
	if err := md.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer md.Signal(syscall.SIGCONT)
	start := time.Now()
	if err := n.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The leave's second, and the rest of the shutdown of a node with
	// no call, which takes well under one more.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("noded took %s to stop with its master stopped, want about 1s (the leave's bound)", took)
	}
	n.AwaitLogLine(t, "leaving the group: the master did not hear it")
}

// A node with TLS joins a masterd with TLS, each checking the other's
// certificate; masterd refuses a node whose certificate names another
// node, and the node refuses a "master" that serves with a node
// certificate.
func TestNodeJoinsOverTLS(t *testing.T) {
	p := nodetest.NewPKI(t)
	md := startMasterd(t, p)
	n := startNode(t, "node1", p.NodeTLS(t, "node1"), md.URL())
	got := md.awaitNode("node1", "up", 20*time.Second, up)
	if want := "https://" + n.Addr(); got.URL != want {
		t.Errorf("masterd lists node1 at %q, want %q", got.URL, want)
	}
	n.AwaitLogLine(t, "joined the group", "master="+md.URL())

	// node2's own certificate, but it says it is node3 in its hello:
	// noded refuses to start like that, so the test speaks for it.
	t.Run("impostor", func(t *testing.T) {
		crt, key := p.Issue(t, rpc.RoleNode, "node2")
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg := observerTLS(t, p)
		cfg.Certificates = []tls.Certificate{pair}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		body := `{"node":"node3","url":"https://127.0.0.1:1","version":"x","protocol":2,"boot_id":"b","functions":[],"calls":[]}`
		req, _ := http.NewRequest(http.MethodPut, md.URL()+rpc.PathHello, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), string(rpc.KindForbidden)) {
			t.Errorf("hello for node3 with node2's certificate: %s %s, want 403 forbidden", resp.Status, b)
		}
		if _, _, found := md.node("node3"); found {
			t.Errorf("masterd lists node3 after a hello with node2's certificate")
		}
	})

	t.Run("node certificate as master", func(t *testing.T) {
		// masterd refuses to serve with a node certificate; another
		// noded, which serves with one, stands in for an impostor.
		impostor := startNode(t, "node1", p.NodeTLS(t, "node1"))
		n2 := startNode(t, "node2", p.NodeTLS(t, "node2"), "https://"+impostor.Addr())
		n2.AwaitLogLine(t, "hello failed", "does not carry the master role")
		if _, joined := n2.LogLine("joined the group"); joined {
			t.Errorf("node2 joined a master serving with a node certificate; its log:\n%s", n2.Log())
		}
	})
}

// A node frozen past its session timeout is listed down; thawed, its
// next renewal is refused as unknown_session and it says hello again,
// with the same boot id.
func TestFrozenNodeSaysHelloAgain(t *testing.T) {
	const timeout = time.Second
	md := startMasterd(t, nil, "--session-timeout", timeout.String())
	n := startNode(t, "node1", nil, md.URL())
	first := md.awaitNode("node1", "up", 20*time.Second, up)
	if err := n.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	md.awaitNode("node1", "down", 10*time.Second, down)
	if took := time.Since(stopped); took > timeout+time.Second {
		t.Errorf("masterd listed the frozen node down after %s, want within the session timeout and a second (%s)", took, timeout+time.Second)
	}
	if err := n.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	again := md.awaitNode("node1", "up again", 20*time.Second, func(x rpc.Node) bool { return up(x) && x.Joined.After(first.Joined) })
	if again.BootID != first.BootID {
		t.Errorf("node1 came back with boot id %s, want %s", again.BootID, first.BootID)
	}
	n.AwaitLogLine(t, "lost the session", "unknown_session")
}

// A configuration set on masterd reaches the node through its held
// renewal, which masterd answers at once, long before the hold ends;
// the node logs the new keys and version once.
func TestConfigurationReachesTheNode(t *testing.T) {
	md := startMasterd(t, nil, "--session-timeout", "60s") // a hold of 20s
	n := startNode(t, "node1", nil, md.URL())
	md.awaitNode("node1", "up", 20*time.Second, up)
	n.AwaitLogLine(t, "msg=configuration", "keys=[]")

	set := time.Now()
	req, _ := http.NewRequest(http.MethodPut, md.URL()+rpc.PathSetConfig, strings.NewReader(`{"node":"node1","set":{"color":"blue"}}`))
	resp, err := md.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s: %s %s, want 200", rpc.PathSetConfig, resp.Status, body)
	}
	line := n.AwaitLogLine(t, "msg=configuration", "keys=[color]")
	if took := time.Since(set); took > 5*time.Second {
		t.Errorf("the node heard of the configuration %s after it was set, want at once (its renewal is held 20s)", took)
	}
	if strings.Contains(line, "version=0 ") {
		t.Errorf("the configuration line has version 0: %s", line)
	}
	if got := strings.Count(n.Log(), "msg=configuration"); got != 2 {
		t.Errorf("noded logged the configuration %d times, want twice (at the join and at the change); its log:\n%s", got, n.Log())
	}
}

// Two nodes under one name take each other's session at every hello.
// Each loss of a session younger than its timeout is waited out with a
// back-off, so the twins do not make masterd write a join, and wake
// every held renewal of the fleet, several times a second forever.
func TestTwinsBackOff(t *testing.T) {
	md := startMasterd(t, nil)
	var logA nodetest.SyncBuffer
	waitsA := make(chan time.Duration, 64)
	twin := func(url string, log io.Writer, waits chan<- time.Duration) *membership.Member {
		m, err := membership.New(membership.Config{
			Masters: []string{md.URL()}, Node: "twin", URL: url, BootID: "boot-" + url,
			Facts:  func() ([]rpc.Function, []rpc.CallSummary) { return nil, nil },
			Logger: slog.New(slog.NewTextHandler(log, nil)),
			Rand:   func(n int64) int64 { return n - 1 }, // the longest wait
			After: func(d time.Duration) <-chan time.Time {
				select {
				case waits <- d: // nil for B: never
				default: // the test stopped looking
				}
				return time.After(d)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a := twin("http://127.0.0.1:1", &logA, waitsA)
	go a.Run(ctx)
	md.awaitNode("twin", "up at A's URL", 20*time.Second, func(n rpc.Node) bool { return up(n) && n.URL == "http://127.0.0.1:1" })
	b := twin("http://127.0.0.1:2", io.Discard, nil)
	go b.Run(ctx)

	// B's hello takes A's session; A learns it at its next renewal and
	// must back off before saying hello again.
	deadline := time.After(20 * time.Second)
	for !strings.Contains(logA.String(), "lost the session soon after joining") {
		select {
		case <-waitsA: // renewal pacing; the loss comes later
		case <-deadline:
			t.Fatalf("A never backed off after B took its session; A's log:\n%s", logA.String())
		}
	}
	if !strings.Contains(md.Log(), "a hello replaces the live session of a node at another URL") {
		t.Errorf("masterd did not warn of two nodes under one name; its log:\n%s", md.Log())
	}
}
