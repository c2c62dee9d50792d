package masterd_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools"
)

// TestFailoverAcceptance is failover end to end on one fleet: etcd,
// three masterd each reaching etcd through a proxy of its own, and ten
// noded given the three masters, all real processes on loopback. In
// turn: the ten join; the active master is killed (SIGKILL) with a
// `noderpc call --all` sent at the kill; the new active master is cut
// off from etcd; etcd is stopped and started again. The timings of
// each step are logged for doc/ha.md.
func TestFailoverAcceptance(t *testing.T) {
	etcd := nodetest.StartEtcd(t) // a private one: the test restarts it
	prefix := nodetest.EtcdPrefix(t)
	g := &group{t: t, hc: &http.Client{Timeout: 5 * time.Second}}
	proxies := make(map[*nodetest.Masterd]*nodetest.Proxy)
	var urls []string
	for range 3 {
		p := nodetest.StartProxy(t, etcd.ClientAddr())
		m := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{
			"--etcd", "http://" + p.Addr(), "--etcd-prefix", prefix,
			"--lease-ttl", failoverTTL.String(), "--session-timeout", failoverTimeout.String(),
			"--check-nodes=false",
		}})
		proxies[m] = p
		g.masters = append(g.masters, m)
		urls = append(urls, m.URL())
	}
	var nodeOpts []nodetest.Options
	for i := range failoverNodes {
		nodeOpts = append(nodeOpts, nodetest.Options{Flags: []string{
			"--node-name", fmt.Sprintf("node%02d", i), "--master", strings.Join(urls, ","),
		}})
	}
	nodetest.StartEach(t, nodeOpts)
	cli := etcd.Client(t)

	// 1. Every node joins the active master.
	first, _, _ := g.await(g.masters, "all ten nodes up", 60*time.Second, allUp(time.Time{}))

	// 2 and 3. SIGKILL of the active master, and a call --all at once.
	killed := time.Now()
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	called := callAll(urls, killed)
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
	_, list, _ = g.await(live, "every node said hello again after the kill", 30*time.Second, allUp(killed))
	rejoined := lastJoined(list).Sub(elected)
	// The bound is the renewal interval itself, with no margin: a node
	// may be in a back-off drawn just before the new master was up (at
	// most 1.6 s, noded's ceiling once a standby answered), then pick
	// the dead master, refused at once, and back off again (1.6 s);
	// its picker never picks a master twice in a row, so its next
	// hello reaches the active master or a standby naming it. That is
	// 3.2 s and a few round trips, within the 3.33 s of the default
	// session timeout.
	if rejoined > renewalInterval {
		t.Errorf("the last node said hello %v after the new active master was seen, want within a renewal interval, %v", rejoined, renewalInterval)
	}
	o := awaitCall(t, called)
	if o.code != 0 || strings.Count(o.stdout, `"x"`) != failoverNodes {
		t.Errorf("noderpc call --all sent at the kill = exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 and %d results", o.code, o.stdout, o.stderr, failoverNodes)
	}

	// 4. The active master is cut off from etcd: it steps down before
	// another is elected and before its lease could lapse, and writes
	// nothing after.
	third := without(live, second)[0]
	if a := setConfig(g, second, 1); a.status != http.StatusOK {
		t.Fatalf("set config on the active master %s = %d %s, want 200", second.URL(), a.status, a.active)
	}
	proxies[second].Set(nodetest.ProxyCut, 0)
	cut := time.Now()
	cutRev := etcdRevision(t, cli)
	line := second.AwaitLogLine(t, "stepped down")
	down := logTime(t, line, "time")
	lives := logTime(t, line, "lease_lives_until_at_least")
	if !down.Before(lives) {
		t.Errorf("the master cut off stepped down at %s, not before the earliest expiry of its lease %s", down, lives)
	}
	if a := setConfig(g, second, 2); a.status != http.StatusMisdirectedRequest {
		t.Errorf("set config on the master cut off, after its step-down = %d, want 421 not_active", a.status)
	}
	_, _, reelected := g.await([]*nodetest.Masterd{third}, "the last standby active", 30*time.Second, anyList)
	activeLine := third.AwaitLogLine(t, "msg=active") // its first term
	activeAt := logTime(t, activeLine, "time")
	if !down.Before(activeAt) {
		t.Errorf("the master cut off stepped down at %s, after %s was elected at %s", down, third.URL(), activeAt)
	}
	// No renewal-interval bound here, only the time logged: the master
	// cut off is alive and, knowing no leader, answers not_active
	// naming none, so a node that picks it backs off (up to 1.6 s) as
	// after the dead one: two masters to miss, not one.
	_, _, cutRejoined := g.await([]*nodetest.Masterd{third}, "every node said hello to the master elected after the cut", 30*time.Second, allUp(cut))

	// Back in touch with etcd, the deposed master is a standby naming
	// the new one and still writes nothing: every key of the registry
	// written after the cut was written in the new master's term.
	proxies[second].Set(nodetest.ProxyPass, 0)
	g.await(live, "the deposed master naming the new one", 30*time.Second, anyList)
	if a := setConfig(g, second, 3); a.status != http.StatusMisdirectedRequest || a.active != third.URL() {
		t.Errorf("set config on the deposed master = %d naming %q, want 421 naming %s", a.status, a.active, third.URL())
	}
	v, _ := nodetest.LogAttr(activeLine, "election_revision")
	termRev, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("the election revision in %q: %v", activeLine, err)
	}
	for key, rev := range nodetest.EtcdRevisions(t, cli, prefix+"/registry/") {
		if rev > cutRev && rev < termRev {
			t.Errorf("%s was written at revision %d, after the cut (%d) and before the new master's term (%d): the master cut off wrote", key, rev, cutRev, termRev)
		}
	}

	// 5. etcd stops and starts again: with no masterd or noded
	// restarted, a master is active again and every node up on it.
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	noneActive := awaitNoneActive(t, g, live)
	// Timed from the start of etcd, not from Restart's return: its
	// check that etcd serves may see it later than the masters do,
	// after every node is back. Every node said hello after
	// noneActive: no master was active between the step-down and it.
	restarted := time.Now()
	if err := etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	recoveredBy, _, recoveredAt := g.await(live, "a master active again", 30*time.Second, anyList)
	_, _, allBack := g.await(live, "all ten nodes up again", 30*time.Second, allUp(noneActive))

	t.Logf("lease TTL %v, session timeout %v, %d nodes, 3 masters", failoverTTL, failoverTimeout, failoverNodes)
	t.Logf("kill -> %s active and named by the other: %v", second.URL(), failover.Round(time.Millisecond))
	t.Logf("new active -> the last node said hello: %v", rejoined.Round(time.Millisecond))
	t.Logf("kill -> call --all sent at the kill done on all nodes: %v", o.took.Round(time.Millisecond))
	t.Logf("cut -> stepped down: %v, %v before its lease could lapse", down.Sub(cut).Round(time.Millisecond), lives.Sub(down).Round(time.Millisecond))
	t.Logf("cut -> %s active (its log): %v, step-down -> it: %v; answering as active: %v", third.URL(), activeAt.Sub(cut).Round(time.Millisecond), activeAt.Sub(down).Round(time.Millisecond), reelected.Sub(cut).Round(time.Millisecond))
	t.Logf("cut -> every node said hello to it: %v", cutRejoined.Sub(cut).Round(time.Millisecond))
	t.Logf("etcd stopped -> no master active: %v", noneActive.Sub(stopped).Round(time.Millisecond))
	t.Logf("etcd started -> %s active: %v, every node up on it: %v", recoveredBy.URL(), recoveredAt.Sub(restarted).Round(time.Millisecond), allBack.Sub(restarted).Round(time.Millisecond))
}

// callResult is how a `noderpc call --all` ended.
type callResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// callAll runs `noderpc --master urls call --all echo "x"` in the
// background and sends how it ended, timed from since.
func callAll(urls []string, since time.Time) <-chan callResult {
	done := make(chan callResult, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := tools.Run(context.Background(), []string{"--insecure", "--master", strings.Join(urls, ","),
			"call", "--all", "--ordered", "echo", `"x"`}, strings.NewReader(""), &stdout, &stderr)
		done <- callResult{code, stdout.String(), stderr.String(), time.Since(since)}
	}()
	return done
}

// awaitCall waits for the call of callAll; the test fails after 60s.
func awaitCall(t *testing.T, done <-chan callResult) callResult {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(60 * time.Second):
		t.Fatal("noderpc call --all did not end within 60s")
		return callResult{}
	}
}

// lastJoined is when the last node of list joined.
func lastJoined(list rpc.ListNodesResponse) time.Time {
	var last time.Time
	for _, n := range list.Nodes {
		if n.Joined.After(last) {
			last = n.Joined
		}
	}
	return last
}

// setAnswer is the status of a SetConfig and the master a standby names.
type setAnswer struct {
	status int
	active string
}

// setConfig sets the key k to v on m.
func setConfig(g *group, m *nodetest.Masterd, v int) setAnswer {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPut, m.URL()+rpc.PathSetConfig, strings.NewReader(fmt.Sprintf(`{"set":{"k":%d}}`, v)))
	if err != nil {
		g.t.Fatal(err)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		g.t.Fatalf("set config on %s: %v", m.URL(), err)
	}
	defer resp.Body.Close()
	return setAnswer{resp.StatusCode, resp.Header.Get(rpc.HeaderActiveMaster)}
}

// etcdRevision is etcd's current revision.
func etcdRevision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// logTime is the time attribute key of a log line.
func logTime(t *testing.T, line, key string) time.Time {
	t.Helper()
	at, err := nodetest.LogTime(line, key)
	if err != nil {
		t.Fatal(err)
	}
	return at
}
