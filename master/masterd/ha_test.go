package masterd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// haTTL is the lease TTL of the tests: the shortest masterd takes.
const haTTL = 2 * time.Second

// group is the masterds of one test, on one etcd and one prefix.
type group struct {
	t         *testing.T
	endpoints string
	prefix    string
	c         *http.Client
}

func newGroup(t *testing.T, endpoints []string) *group {
	return &group{t: t, endpoints: strings.Join(endpoints, ","), prefix: nodetest.EtcdPrefix(t), c: &http.Client{Timeout: 20 * time.Second}}
}

// start starts a masterd of the group with priority, on etcd at
// endpoints (the group's when empty).
func (g *group) start(priority int, endpoints string) *nodetest.Masterd {
	g.t.Helper()
	if endpoints == "" {
		endpoints = g.endpoints
	}
	return nodetest.StartMasterd(g.t, nodetest.MasterdOptions{Flags: []string{
		"--check-nodes=false", "--etcd", endpoints, "--etcd-prefix", g.prefix,
		"--lease-ttl", haTTL.String(), "--priority", strconv.Itoa(priority),
	}})
}

// answer is one answer of a masterd.
type answer struct {
	status int
	kind   rpc.Kind
	msg    string
	// active is X-Active-Master, version X-Group-Version ("" if absent).
	active, version string
	body            []byte
}

// ask sends method path with body to base; err is a failure to get any
// answer (the master is dead or not listening).
func (g *group) ask(base, method, path string, body []byte) (answer, error) {
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	resp, err := g.c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, active: resp.Header.Get(rpc.HeaderActiveMaster), version: resp.Header.Get(rpc.HeaderGroupVersion), body: out}
	if resp.StatusCode >= 300 {
		var e rpc.ErrorResponse
		if err := json.Unmarshal(out, &e); err != nil || e.Error == nil {
			g.t.Fatalf("%s %s on %s answered %d with no error object: %s", method, path, base, resp.StatusCode, out)
		}
		a.kind, a.msg = e.Error.Kind, e.Error.Message
	}
	return a, nil
}

// active returns the one of ms that answers ListNodes as the active
// master, waiting until one does; it fails the test if two do, or if
// none does within within.
func (g *group) active(within time.Duration, ms ...*nodetest.Masterd) *nodetest.Masterd {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var found []*nodetest.Masterd
		for _, m := range ms {
			if a, err := g.ask(m.URL(), "GET", rpc.PathListNodes, nil); err == nil && a.status == 200 {
				found = append(found, m)
			}
		}
		switch {
		case len(found) > 1:
			g.t.Fatalf("%s and %s both answer as the active master", found[0].URL(), found[1].URL())
		case len(found) == 1:
			return found[0]
		case time.Now().After(deadline):
			g.t.Fatalf("no masterd of %d answered as the active one within %s", len(ms), within)
		}
		time.Sleep(20 * time.Millisecond) // polling the masters, which have no event to wait on
	}
}

// hello says hello to base for node and returns the session.
func (g *group) hello(base, node string) rpc.Session {
	g.t.Helper()
	body, _ := json.Marshal(helloOf(node, "boot-"+node))
	a, err := g.ask(base, "PUT", rpc.PathHello, body)
	if err != nil || a.status != 200 {
		g.t.Fatalf("hello of %s to %s = %+v %v, want a session", node, base, a, err)
	}
	var s rpc.Session
	if err := json.Unmarshal(a.body, &s); err != nil {
		g.t.Fatalf("hello of %s: %v in %s", node, err, a.body)
	}
	return s
}

// nodes lists the nodes of the active master at base.
func (g *group) nodes(base string) map[string]rpc.Node {
	g.t.Helper()
	a, err := g.ask(base, "GET", rpc.PathListNodes, nil)
	var l rpc.ListNodesResponse
	if err != nil || a.status != 200 || json.Unmarshal(a.body, &l) != nil {
		g.t.Fatalf("list nodes of %s = %+v %v", base, a, err)
	}
	nodes := make(map[string]rpc.Node)
	for _, n := range l.Nodes {
		nodes[n.Name] = n
	}
	return nodes
}

// checkStandby checks that every procedure of the standby at base
// answers not_active naming active, or naming none when active is "".
func (g *group) checkStandby(base, active string) {
	g.t.Helper()
	renew, _ := json.Marshal(rpc.RenewRequest{Node: "n0", Session: "s"})
	leave, _ := json.Marshal(rpc.LeaveRequest{Node: "n0", Session: "s"})
	hello, _ := json.Marshal(helloOf("n0", "b0"))
	for _, c := range []struct {
		method, path string
		body         []byte
	}{
		{"PUT", rpc.PathHello, hello},
		{"PUT", rpc.PathRenew, renew},
		{"PUT", rpc.PathLeave, leave},
		{"GET", rpc.PathListNodes, nil},
		{"PUT", rpc.PathGetNode, []byte(`{"node":"n0"}`)},
		{"PUT", rpc.PathGetConfig, []byte(`{}`)},
		{"PUT", rpc.PathSetConfig, []byte(`{"set":{"k":1}}`)},
	} {
		a, err := g.ask(base, c.method, c.path, c.body)
		if err != nil {
			g.t.Fatalf("%s %s on the standby %s: %v", c.method, c.path, base, err)
		}
		wantMsg := "not active; the active master is " + active
		if active == "" {
			wantMsg = "no master is active; an election is under way"
		}
		if a.status != 421 || a.kind != rpc.KindNotActive || a.active != active || a.msg != wantMsg || a.version != "" {
			g.t.Errorf("%s %s on the standby %s = %d %s %q, X-Active-Master %q, X-Group-Version %q; want 421 not_active %q, X-Active-Master %q, no X-Group-Version",
				c.method, c.path, base, a.status, a.kind, a.msg, a.active, a.version, wantMsg, active)
		}
	}
}

// logTime is the time of a masterd log line (slog's text format).
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	at, err := nodetest.LogTime(line, "time")
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// pair waits until one of m1 and m2 is active and the other a standby
// that says so, and returns them in that order.
func (g *group) pair(m1, m2 *nodetest.Masterd) (active, standby *nodetest.Masterd) {
	active, standby = g.active(20*time.Second, m1, m2), m2
	if active == m2 {
		standby = m1
	}
	standby.AwaitLogLine(g.t, "standby; the active master is "+active.URL())
	return active, standby
}

// TestStandbyTakesOver runs two masterds on one etcd: exactly one is active,
// the other answers every procedure with not_active naming it; SIGKILL
// the active one and the other is active within the lease TTL and a
// second, and lists every node the first had registered, still up.
func TestStandbyTakesOver(t *testing.T) {
	g := newGroup(t, nodetest.EtcdEndpoints(t))
	m1, m2 := g.start(0, ""), g.start(0, "")
	first, other := g.pair(m1, m2)
	g.checkStandby(other.URL(), first.URL())

	// The active master learns of the standby from etcd, a moment after
	// the standby says it stands by: the sessions name both once it has.
	want := slices.Sorted(slices.Values([]string{m1.URL(), m2.URL()}))
	for deadline := time.Now().Add(10 * time.Second); ; {
		s := g.hello(first.URL(), "node-00")
		if slices.Equal(s.Masters, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session masters = %v 10s after the standby stood by, want both masters %v", s.Masters, want)
		}
		time.Sleep(20 * time.Millisecond) // polling the active master, which has no event to wait on
	}
	const nodes = 10
	for i := range nodes {
		s := g.hello(first.URL(), fmt.Sprintf("node-%02d", i))
		if !slices.Equal(s.Masters, want) {
			t.Errorf("session masters = %v, want both masters %v", s.Masters, want)
		}
	}
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	second := g.active(10*time.Second, other)
	took := time.Since(killed)
	t.Logf("the standby was active %s after the SIGKILL of the active master (lease TTL %s)", took.Round(time.Millisecond), haTTL)
	if took > haTTL+time.Second {
		t.Errorf("the standby became active %s after the SIGKILL, want within the lease TTL + 1s = %s", took, haTTL+time.Second)
	}
	line := second.AwaitLogLine(t, "msg=active", "nodes=10")
	t.Logf("its log: %s", line)
	got := g.nodes(second.URL())
	for i := range nodes {
		name := fmt.Sprintf("node-%02d", i)
		if n, ok := got[name]; !ok || n.State != rpc.NodeUp || n.BootID != "boot-"+name {
			t.Errorf("%s on the new active master: %+v (listed: %t), want up with its boot id", name, n, ok)
		}
	}
	// The old session is unknown: the node says hello, which succeeds.
	renew, _ := json.Marshal(rpc.RenewRequest{Node: "node-00", Session: "old"})
	if a, _ := g.ask(second.URL(), "PUT", rpc.PathRenew, renew); a.kind != rpc.KindUnknownSession {
		t.Errorf("a renewal of a session of the dead master = %d %s, want unknown_session", a.status, a.kind)
	}
	g.hello(second.URL(), "node-00")
}

// TestPriority checks that priority chooses who takes over but deposes
// no active master: a higher-priority candidate started while a lower
// one is active stays standby; when the active dies, the higher of two
// standbys takes over.
func TestPriority(t *testing.T) {
	g := newGroup(t, nodetest.EtcdEndpoints(t))
	low := g.start(1, "")
	g.active(20*time.Second, low)
	high := g.start(5, "")
	mid := g.start(3, "")
	high.AwaitLogLine(t, "standby; the active master is "+low.URL())
	mid.AwaitLogLine(t, "standby; the active master is "+low.URL())
	// Several lease renewals later the low one is still the active one.
	for range 3 * int(haTTL/timingsOf(haTTL).interval) {
		if got := g.active(5*time.Second, low, high, mid); got != low {
			t.Fatalf("%s became active while %s was, want it to stay a standby", got.URL(), low.URL())
		}
		time.Sleep(timingsOf(haTTL).interval) // observing that nothing changes over several renewals
	}
	if _, ok := high.LogLine("campaigning"); ok {
		t.Errorf("the higher-priority standby campaigned while a master was active")
	}
	if err := low.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := g.active(10*time.Second, high, mid); got != high {
		t.Errorf("%s took over, want %s of the highest priority", got.URL(), high.URL())
	}
	mid.AwaitLogLine(t, "standby; the active master is "+high.URL())
	if _, ok := mid.LogLine("campaigning"); ok {
		t.Errorf("the lower-priority standby campaigned while a better one was live")
	}
}

// TestEtcdRestart stops etcd under two masterds: the active one steps
// down (its held renewals answer not_active at once) and nothing is
// active; once etcd is back, one of them is active again without a
// restart of either.
func TestEtcdRestart(t *testing.T) {
	etcd := nodetest.StartEtcd(t)
	g := newGroup(t, etcd.Endpoints())
	m1, m2 := g.start(0, ""), g.start(0, "")
	first := g.active(20*time.Second, m1, m2)
	s := g.hello(first.URL(), "n1")
	held := make(chan answer, 1)
	go func() {
		body, _ := json.Marshal(rpc.RenewRequest{Node: "n1", Session: s.ID, GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion, Hold: s.RenewWithin})
		a, err := g.ask(first.URL(), "PUT", rpc.PathRenew, body)
		if err != nil {
			a = answer{msg: err.Error()}
		}
		held <- a
	}()
	first.AwaitLogLine(t, "active")
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	line := first.AwaitLogLine(t, "stepped down")
	t.Logf("%s after etcd stopped: %s", time.Since(stopped).Round(time.Millisecond), line)
	select {
	case a := <-held:
		if a.status != 421 || a.kind != rpc.KindNotActive {
			t.Errorf("the renewal held when the master stepped down = %d %s %q, want not_active", a.status, a.kind, a.msg)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the renewal held when the master stepped down was not answered")
	}
	// The standby names no master once it sees etcd gone, at the
	// latest when its own lease could lapse.
	for _, m := range []*nodetest.Masterd{m1, m2} {
		deadline := time.Now().Add(haTTL)
		for {
			a, err := g.ask(m.URL(), "GET", rpc.PathListNodes, nil)
			if err == nil && a.status == 421 && a.active == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s with etcd stopped: %d %s %q X-Active-Master %q, %v; want not_active naming no master", m.URL(), a.status, a.kind, a.msg, a.active, err)
			}
			time.Sleep(20 * time.Millisecond) // polling the master, which has no event to wait on
		}
	}
	if err := etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	again := g.active(15*time.Second, m1, m2)
	t.Logf("%s was active %s after etcd restarted", again.URL(), time.Since(restarted).Round(time.Millisecond))
	if n, ok := g.nodes(again.URL())["n1"]; !ok {
		t.Errorf("n1 is not listed after the restart of etcd: %+v", n)
	}
}

// TestFencing cuts the active master off from etcd (a proxy between
// them stalls): it steps down before its lease could lapse, so before
// the standby is elected, and writes nothing after: a SetConfig sent to
// it answers not_active, and etcd's registry keys keep the revisions
// they had at the cut until the new active master writes.
func TestFencing(t *testing.T) {
	etcd := nodetest.StartEtcd(t)
	proxy := nodetest.StartProxy(t, etcd.ClientAddr())
	g := newGroup(t, etcd.Endpoints())
	cutOff := g.start(0, "http://"+proxy.Addr())
	g.active(20*time.Second, cutOff)
	other := g.start(0, "")
	other.AwaitLogLine(t, "standby; the active master is "+cutOff.URL())
	for i := range 3 {
		g.hello(cutOff.URL(), fmt.Sprintf("n%d", i))
	}
	if a, err := g.ask(cutOff.URL(), "PUT", rpc.PathSetConfig, []byte(`{"set":{"k":1}}`)); err != nil || a.status != 200 {
		t.Fatalf("set config on the active master = %+v %v", a, err)
	}
	cli := etcd.Client(t)
	before := nodetest.EtcdRevisions(t, cli, g.prefix+"/registry/")

	proxy.Set(nodetest.ProxyStall, 0)
	cut := time.Now()
	line := cutOff.AwaitLogLine(t, "stepped down")
	down := logTime(t, line)
	lives, err := nodetest.LogTime(line, "lease_lives_until_at_least")
	if err != nil {
		t.Fatalf("the step-down line says not until when the lease lives: %v", err)
	}
	t.Logf("stepped down %s after the cut, %s before its lease could lapse", down.Sub(cut).Round(time.Millisecond), lives.Sub(down).Round(time.Millisecond))
	if !down.Before(lives) {
		t.Errorf("stepped down at %s, not before the earliest expiry of its lease %s", down, lives)
	}
	if a, err := g.ask(cutOff.URL(), "PUT", rpc.PathSetConfig, []byte(`{"set":{"k":2}}`)); err != nil || a.status != 421 || a.kind != rpc.KindNotActive {
		t.Errorf("set config on the master cut off, after its step-down = %+v %v, want not_active", a, err)
	}

	g.active(10*time.Second, other)
	elected := logTime(t, other.AwaitLogLine(t, "msg=active"))
	t.Logf("the standby was active %s after the cut, %s after the step-down", elected.Sub(cut).Round(time.Millisecond), elected.Sub(down).Round(time.Millisecond))
	if !down.Before(elected) {
		t.Errorf("the master cut off stepped down at %s, after the other was elected at %s", down, elected)
	}
	if after := nodetest.EtcdRevisions(t, cli, g.prefix+"/registry/"); !maps.Equal(before, after) {
		t.Errorf("the registry in etcd changed after the cut:\nbefore %v\nafter  %v", before, after)
	}

	// Back in touch with etcd, the deposed master is a standby naming
	// the new one, and still writes nothing.
	proxy.Set(nodetest.ProxyPass, 0)
	cutOff.AwaitLogLine(t, "standby; the active master is "+other.URL())
	if a, err := g.ask(cutOff.URL(), "PUT", rpc.PathSetConfig, []byte(`{"set":{"k":3}}`)); err != nil || a.status != 421 || a.active != other.URL() {
		t.Errorf("set config on the deposed master = %+v %v, want not_active naming %s", a, err, other.URL())
	}
	if after := nodetest.EtcdRevisions(t, cli, g.prefix+"/registry/"); !maps.Equal(before, after) {
		t.Errorf("the registry in etcd changed with no write to the active master:\nbefore %v\nafter  %v", before, after)
	}
	if a, err := g.ask(other.URL(), "PUT", rpc.PathSetConfig, []byte(`{"set":{"k":4}}`)); err != nil || a.status != 200 {
		t.Fatalf("set config on the new active master = %+v %v", a, err)
	}
	if after := nodetest.EtcdRevisions(t, cli, g.prefix+"/registry/"); maps.Equal(before, after) {
		t.Errorf("a write of the new active master changed no key of the registry in etcd: the comparison above sees nothing")
	}
}

// TestResign stops the active master with SIGTERM: it revokes its
// lease, so the standby takes over at once rather than when the lease
// would have lapsed.
func TestResign(t *testing.T) {
	g := newGroup(t, nodetest.EtcdEndpoints(t))
	m1, m2 := g.start(0, ""), g.start(0, "")
	first, other := g.pair(m1, m2)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	g.active(10*time.Second, other)
	took := time.Since(stopped)
	t.Logf("the standby was active %s after the active master stopped", took.Round(time.Millisecond))
	if took >= haTTL {
		t.Errorf("the standby took over %s after the active master stopped, want well within the lease TTL %s: the lease was not revoked", took, haTTL)
	}
	if _, ok := first.LogLine("resigning"); !ok {
		t.Errorf("the stopped master did not log its resignation")
	}
}

// TestCampaignKeyDeleted deletes the active master's campaign key
// behind its back, as an operator might: it steps down at once, then
// campaigns again and, the only candidate, is active again with the
// registry it had.
func TestCampaignKeyDeleted(t *testing.T) {
	endpoints := nodetest.EtcdEndpoints(t)
	g := newGroup(t, endpoints)
	m := g.start(0, "")
	g.active(20*time.Second, m)
	g.hello(m.URL(), "n1")
	cli := nodetest.EtcdClient(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, g.prefix+electionDir+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	m.AwaitLogLine(t, "stepped down: "+errCampaignGone.Error())
	g.active(10*time.Second, m)
	if n, ok := g.nodes(m.URL())["n1"]; !ok || n.State != rpc.NodeUp {
		t.Errorf("n1 after the new term: %+v (listed: %t), want up", n, ok)
	}
}

// TestDuplicateAdvertise starts a second masterd advertising the URL of
// the active one: it is refused as a candidate, saying why, instead of
// taking over the first one's candidate key and, once active, sending
// every node to the first one (a standby that took the other's campaign
// for its own and named no master). Once the first stops, it is a
// candidate like any other.
func TestDuplicateAdvertise(t *testing.T) {
	g := newGroup(t, nodetest.EtcdEndpoints(t))
	m1 := g.start(0, "")
	g.active(20*time.Second, m1)
	m2 := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{
		"--check-nodes=false", "--etcd", g.endpoints, "--etcd-prefix", g.prefix,
		"--lease-ttl", haTTL.String(), "--advertise", m1.URL(),
	}})
	m2.AwaitLogLine(t, "another live candidate advertises this URL")
	if line, ok := m2.LogLine("msg=campaigning"); ok {
		t.Errorf("the masterd advertising another's URL campaigned: %s", line)
	}
	g.active(time.Second, m1, m2)
	if err := m1.Stop(); err != nil {
		t.Fatal(err)
	}
	g.active(10*time.Second, m2)
}
