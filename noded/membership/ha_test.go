package membership_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// startGroup starts n masterd on one etcd with a lease TTL of 2 s, and
// returns them with the index of the one elected active, once the
// others name it.
func startGroup(t *testing.T, n int, flags ...string) ([]*masterd, int) {
	t.Helper()
	eps := strings.Join(nodetest.EtcdEndpoints(t), ",")
	prefix := nodetest.EtcdPrefix(t)
	var ms []*masterd
	for range n {
		ms = append(ms, startMasterd(t, nil, append([]string{"--etcd", eps, "--etcd-prefix", prefix, "--lease-ttl", "2s"}, flags...)...))
	}
	return ms, awaitActive(t, ms, nil)
}

// awaitActive polls the masters but skip until one is active and every
// other names it, and returns its index.
func awaitActive(t *testing.T, ms []*masterd, skip *masterd) int {
	t.Helper()
	return nodetest.AwaitActive(t, ms, skip, probe)
}

// probe lists m's nodes and returns the status, and the master a
// standby names.
func probe(m *masterd) (int, string) { return nodetest.ProbeMaster(m.client, m.URL()) }

// A node given only a standby's URL joins the active master the standby
// names, at once: no failed hello, no back-off.
func TestNodeGivenAStandbyJoinsTheActiveMaster(t *testing.T) {
	ms, a := startGroup(t, 2)
	active, standby := ms[a], ms[1-a]
	n := startNode(t, "node1", nil, standby.URL())
	active.awaitNode("node1", "up on the active master", 20*time.Second, up)
	n.AwaitLogLine(t, "not the active master; saying hello to the one it named", "master="+standby.URL(), "active="+active.URL())
	n.AwaitLogLine(t, "joined the group", "master="+active.URL())
	if line, ok := n.LogLine("hello failed"); ok {
		t.Errorf("noded backed off on its way to the active master: %s", line)
	}
	st, _ := probe(standby)
	if st != http.StatusMisdirectedRequest {
		t.Errorf("the standby answers ListNodes %d, want 421", st)
	}
}

// When the active master dies, a node that knew both masters holds a
// session with the new active master soon after it is elected.
func TestNodeFollowsAFailover(t *testing.T) {
	ms, a := startGroup(t, 2, "--session-timeout", "6s")
	active, standby := ms[a], ms[1-a]
	n := startNode(t, "node1", nil, active.URL(), standby.URL())
	first := active.awaitNode("node1", "up", 20*time.Second, up)
	sessionHeld(t, n, 1)

	killed := time.Now()
	if err := active.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := awaitActive(t, ms, active); ms[got] != standby {
		t.Fatalf("after the kill the active master is %s, want the standby %s", ms[got].URL(), standby.URL())
	}
	elected := time.Now()
	again := standby.awaitNode("node1", "up on the new active master", 20*time.Second, func(x rpc.Node) bool {
		return up(x) && x.Joined.After(first.Joined)
	})
	t.Logf("kill -> new active %v; new active -> node1 joined it %v",
		elected.Sub(killed).Round(time.Millisecond), again.Joined.Sub(elected).Round(time.Millisecond))
	n.AwaitLogLine(t, "joined the group", "master="+standby.URL())
}
