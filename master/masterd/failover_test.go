package masterd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools"
)

// The acceptance test of failover: etcd, three masterd, ten noded, all
// real processes on loopback.
const (
	failoverTTL   = 2 * time.Second
	failoverNodes = 10
	// failoverTimeout is masterd's default session timeout: the bound
	// on the nodes' hellos is measured at the renewal interval nodes
	// have in production. (The hello back-off during a failover, up to
	// 1.6 s, plus one hello to a master not yet active, fits in its
	// 3.3 s, not in the 2 s of a 6 s timeout.)
	failoverTimeout = 10 * time.Second
	// renewalInterval is how long a renewal is held at most, a third of
	// the session timeout: a node whose master died says hello again
	// within it.
	renewalInterval = failoverTimeout / 3
)

// group is the masters of a failover test and the nodes they hold.
type group struct {
	t       *testing.T
	masters []*nodetest.Masterd
	hc      *http.Client
}

// probe lists m's nodes: the status, the list when 200, and the master a
// standby names.
func (g *group) probe(m *nodetest.Masterd) (int, rpc.ListNodesResponse, string) {
	var list rpc.ListNodesResponse
	resp, err := g.hc.Get(m.URL() + rpc.PathListNodes)
	if err != nil {
		return 0, list, ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, list, ""
	}
	if resp.StatusCode == http.StatusOK && rpc.UnmarshalStrict(body, &list, rpc.IgnoreUnknownFields) != nil {
		return 0, list, ""
	}
	return resp.StatusCode, list, resp.Header.Get(rpc.HeaderActiveMaster)
}

// active returns the one master among the live ones that answers, if
// every other live one names it.
func (g *group) active(live []*nodetest.Masterd) (*nodetest.Masterd, rpc.ListNodesResponse, bool) {
	var active *nodetest.Masterd
	var list rpc.ListNodesResponse
	named := map[string]bool{}
	for _, m := range live {
		status, l, leader := g.probe(m)
		switch status {
		case http.StatusOK:
			if active != nil {
				g.t.Errorf("two masters answer as active: %s and %s", active.URL(), m.URL())
				return nil, list, false
			}
			active, list = m, l
		case http.StatusMisdirectedRequest:
			named[leader] = true
		default:
			return nil, list, false
		}
	}
	if active == nil {
		return nil, list, false
	}
	for leader := range named {
		if leader != active.URL() {
			return nil, list, false
		}
	}
	return active, list, true
}

// await polls the live masters until one is active and done holds of
// its list, and returns it and the time it was seen so; the test fails
// past within.
func (g *group) await(live []*nodetest.Masterd, what string, within time.Duration, done func(rpc.ListNodesResponse) bool) (*nodetest.Masterd, rpc.ListNodesResponse, time.Time) {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m, list, ok := g.active(live); ok && done(list) {
			return m, list, time.Now()
		}
		if time.Now().After(deadline) {
			_, list, _ := g.active(live)
			g.t.Fatalf("no master active with %s within %v; last list %+v", what, within, list.Nodes)
		}
		time.Sleep(10 * time.Millisecond) // polling the masters' answers, which have no event to wait on
	}
}

// allUp reports whether list holds the ten nodes, each up, and joined
// after since when since is not zero.
func allUp(since time.Time) func(rpc.ListNodesResponse) bool {
	return func(list rpc.ListNodesResponse) bool {
		if len(list.Nodes) != failoverNodes {
			return false
		}
		for _, n := range list.Nodes {
			if n.State != rpc.NodeUp || n.Joined.Before(since) {
				return false
			}
		}
		return true
	}
}

func anyList(rpc.ListNodesResponse) bool { return true }

// without returns ms less m.
func without(ms []*nodetest.Masterd, m *nodetest.Masterd) []*nodetest.Masterd {
	var rest []*nodetest.Masterd
	for _, x := range ms {
		if x != m {
			rest = append(rest, x)
		}
	}
	return rest
}

// SIGKILL of the active master: a standby is active within the lease
// TTL plus a second, lists every node, and every node says hello to it
// within a renewal interval; a call --all sent at the kill completes on
// every node. Then etcd stops and starts again: a master is active and
// every node up, with no masterd or noded restarted.
func TestFailover(t *testing.T) {
	etcd := nodetest.StartEtcd(t)
	g := &group{t: t, hc: &http.Client{Timeout: 5 * time.Second}}
	prefix := nodetest.EtcdPrefix(t)
	var urls []string
	for range 3 {
		m := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{
			"--etcd", etcd.ClientAddr(), "--etcd-prefix", prefix,
			"--lease-ttl", failoverTTL.String(), "--session-timeout", failoverTimeout.String(),
			"--check-nodes=false",
		}})
		g.masters = append(g.masters, m)
		urls = append(urls, m.URL())
	}
	for i := range failoverNodes {
		nodetest.Start(t, nodetest.Options{Flags: []string{
			"--node-name", fmt.Sprintf("node%02d", i), "--master", strings.Join(urls, ","),
		}})
	}
	first, _, _ := g.await(g.masters, "all ten nodes up", 60*time.Second, allUp(time.Time{}))

	// The kill, and a call --all at once.
	killed := time.Now()
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		code           int
		stdout, stderr string
		took           time.Duration
	}
	called := make(chan outcome, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := tools.Run(context.Background(), []string{"--insecure", "--master", strings.Join(urls, ","),
			"call", "--all", "--ordered", "echo", `"hi"`}, strings.NewReader(""), &stdout, &stderr)
		called <- outcome{code, stdout.String(), stderr.String(), time.Since(killed)}
	}()

	live := without(g.masters, first)
	second, list, elected := g.await(live, "a standby active", 30*time.Second, anyList)
	failover := elected.Sub(killed)
	if failover > failoverTTL+time.Second {
		t.Errorf("a standby was active %v after the kill, want within the lease TTL + 1s = %v", failover, failoverTTL+time.Second)
	}
	if len(list.Nodes) != failoverNodes {
		t.Errorf("the new active master %s lists %d nodes, want all %d: %+v", second.URL(), len(list.Nodes), failoverNodes, list.Nodes)
	}
	for _, n := range list.Nodes {
		if n.State != rpc.NodeUp {
			t.Errorf("the new active master lists %s %s, want up: it was up, and its grace has not run out", n.Name, n.State)
		}
	}
	_, list, _ = g.await(live, "every node said hello again", 30*time.Second, allUp(killed))
	var last time.Time
	for _, n := range list.Nodes {
		if n.Joined.After(last) {
			last = n.Joined
		}
	}
	rejoined := last.Sub(elected)
	if rejoined > renewalInterval {
		t.Errorf("the last node said hello %v after the new active master was seen, want within a renewal interval, %v", rejoined, renewalInterval)
	}

	var callTook time.Duration
	select {
	case o := <-called:
		callTook = o.took
		if o.code != 0 || strings.Count(o.stdout, `"hi"`) != failoverNodes {
			t.Errorf("noderpc call --all sent at the kill = exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 and %d results", o.code, o.stdout, o.stderr, failoverNodes)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("noderpc call --all sent at the kill did not end within 60s")
	}

	// etcd stops: the active master steps down. It starts again: a
	// master is elected and every node says hello to it.
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	stepped := awaitNoneActive(t, g, live)
	if err := etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	third, _, recovered := g.await(live, "all ten nodes up again", 60*time.Second, allUp(restarted))

	t.Logf("lease TTL %v, session timeout %v, %d nodes", failoverTTL, failoverTimeout, failoverNodes)
	t.Logf("kill -> %s active and named by the other: %v", second.URL(), failover.Round(time.Millisecond))
	t.Logf("new active -> the last node said hello: %v", rejoined.Round(time.Millisecond))
	t.Logf("kill -> call --all sent at the kill done on all nodes: %v", callTook.Round(time.Millisecond))
	t.Logf("etcd stopped -> no master active: %v", stepped.Sub(stopped).Round(time.Millisecond))
	t.Logf("etcd started -> %s active with every node up again: %v", third.URL(), recovered.Sub(restarted).Round(time.Millisecond))
}

// awaitNoneActive polls the masters until none answers as active, and
// returns when.
func awaitNoneActive(t *testing.T, g *group, live []*nodetest.Masterd) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		none := true
		for _, m := range live {
			if status, _, _ := g.probe(m); status == http.StatusOK {
				none = false
			}
		}
		if none {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("a master still answers as active 30s after etcd stopped")
		}
		time.Sleep(10 * time.Millisecond) // polling the masters' answers, which have no event to wait on
	}
}
