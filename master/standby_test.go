package master

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// These tests answer as standbys do from loopback servers, for the cases
// a real group produces only in races too short to catch (an election
// that lasts as long as a test wants, standbys naming each other).
// TestClusterFollowsRealStandbys runs real masterd standbys on etcd.

// fakeMasterd counts its calls and answers each with answer.
type fakeMasterd struct {
	*httptest.Server
	calls atomic.Int32
}

func newFakeMasterd(t *testing.T, answer func(w http.ResponseWriter, call int32)) *fakeMasterd {
	t.Helper()
	f := &fakeMasterd{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, f.calls.Add(1))
	}))
	t.Cleanup(f.Close)
	return f
}

var oneNode = rpc.ListNodesResponse{GroupVersion: 7, Nodes: []rpc.Node{{Name: "n1", State: rpc.NodeUp, URL: "http://127.0.0.1:1811"}}}

// activeMasterd answers every call with oneNode.
func activeMasterd(t *testing.T) *fakeMasterd {
	return newFakeMasterd(t, func(w http.ResponseWriter, _ int32) {
		body, _ := rpc.Marshal(oneNode)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// fastRounds are Options whose List policy backs off briefly between
// rounds and gives up after maxElapsed.
func fastRounds(maxElapsed time.Duration) Options {
	return Options{Insecure: true, Timeout: time.Second,
		Retry: RetryPolicies{List: Policy{MaxElapsed: maxElapsed, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}}}
}

// A Client meets a standby's answer as a *NotActiveError naming the
// active master, at once, without retrying it.
func TestClientNotActiveError(t *testing.T) {
	sb := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, "http://127.0.0.1:1812") })
	c := mustNew(t, strings.TrimPrefix(sb.URL, "http://"), Options{Insecure: true})
	_, err := c.invoke(context.Background(), http.MethodGet, rpc.PathListNodes, c.policies.List, nil, nil)
	var na *NotActiveError
	if !errors.As(err, &na) || na.Active != "http://127.0.0.1:1812" || !errors.Is(err, rpc.ErrNotActive) || na.Procedure != "ListNodes" {
		t.Fatalf("ListNodes on a standby = %v; want a *NotActiveError of ListNodes naming http://127.0.0.1:1812, matching rpc.ErrNotActive", err)
	}
	if got := sb.calls.Load(); got != 1 {
		t.Errorf("the standby was called %d times, want once: its answer is final", got)
	}
}

// A Cluster given only a standby asks the active master it names at
// once, learns it, and asks it first from then on.
func TestClusterFollowsTheNamedActiveMaster(t *testing.T) {
	active := activeMasterd(t)
	sb := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, active.URL) })
	c, err := NewCluster([]string{sb.URL}, fastRounds(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		list, err := c.Nodes(context.Background())
		if err != nil || list.GroupVersion != 7 {
			t.Fatalf("Nodes() = %+v, %v; want the active master's list", list, err)
		}
	}
	if got, want := c.Masters(), []string{sb.URL, active.URL}; !slices.Equal(got, want) {
		t.Errorf("Masters() = %q, want %q", got, want)
	}
	if got := c.Active(); got != active.URL {
		t.Errorf("Active() = %q, want %q", got, active.URL)
	}
	if got := sb.calls.Load(); got != 1 {
		t.Errorf("the standby was asked %d times, want once: the second request goes to the active master first", got)
	}
}

// While an election is under way (standbys name no master), a request
// tries the masters again with back-off until one is active.
func TestClusterWaitsForAnElection(t *testing.T) {
	active := activeMasterd(t)
	const electing = 4
	sb := newFakeMasterd(t, func(w http.ResponseWriter, call int32) {
		if call <= electing {
			nodetest.WriteNotActive(w, "")
			return
		}
		nodetest.WriteNotActive(w, active.URL)
	})
	c, err := NewCluster([]string{sb.URL, "http://" + nodetest.DeadAddr(t)}, fastRounds(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if list, err := c.Nodes(context.Background()); err != nil || list.GroupVersion != 7 {
		t.Fatalf("Nodes() during an election = %+v, %v; want the list of the master elected", list, err)
	}
	if got := sb.calls.Load(); got != electing+1 {
		t.Errorf("the standby was asked %d times, want %d: once a round until it named the active master", got, electing+1)
	}
}

// An election that outlasts the List policy's MaxElapsed fails with a
// *NoMasterError holding each master's last error; standbys naming
// each other are followed a bounded number of times per round.
func TestClusterGivesUpOnAnElection(t *testing.T) {
	var b *fakeMasterd
	a := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, b.URL) })
	b = newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, a.URL) })
	electing := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, "") })
	for _, tc := range []struct {
		name    string
		masters []string
	}{
		{"naming each other", []string{a.URL}},
		{"naming none", []string{electing.URL, b.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCluster(tc.masters, fastRounds(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.Nodes(context.Background())
			var nm *NoMasterError
			if !errors.As(err, &nm) || !errors.Is(err, rpc.ErrNotActive) {
				t.Fatalf("Nodes() = %v; want a *NoMasterError matching rpc.ErrNotActive", err)
			}
			if len(nm.Errs) != len(c.Masters()) {
				t.Errorf("NoMasterError holds %d errors, want one for each of the masters %q: %v", len(nm.Errs), c.Masters(), err)
			}
			if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
				t.Errorf("Nodes() gave up after %v, want about the policy's MaxElapsed of 1s", took)
			}
		})
	}
}

// A single master that stays a standby past MaxElapsed is the group's
// answer alone: its own *NotActiveError, not a *NoMasterError of one.
func TestClusterOfOneStandbyReturnsItsError(t *testing.T) {
	electing := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) { nodetest.WriteNotActive(w, "") })
	c, err := NewCluster([]string{electing.URL}, fastRounds(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Nodes(context.Background())
	var na *NotActiveError
	var nm *NoMasterError
	if !errors.As(err, &na) || errors.As(err, &nm) || !errors.Is(err, rpc.ErrNotActive) {
		t.Fatalf("Nodes() = %v (%T); want the master's own *NotActiveError", err, err)
	}
}

// haGroup starts n masterd on one etcd, plain HTTP, with a lease TTL of
// 2 s, and returns them with the index of the active one once every
// other names it.
func haGroup(t *testing.T, n int) ([]*nodetest.Masterd, int) {
	t.Helper()
	eps := strings.Join(nodetest.EtcdEndpoints(t), ",")
	prefix := nodetest.EtcdPrefix(t)
	var ms []*nodetest.Masterd
	for range n {
		ms = append(ms, nodetest.StartMasterd(t, nodetest.MasterdOptions{
			Flags: []string{"--etcd", eps, "--etcd-prefix", prefix, "--lease-ttl", "2s"}}))
	}
	return ms, awaitActive(t, ms, nil)
}

// awaitActive polls the masters but skip until one is active and every
// other names it, and returns its index.
func awaitActive(t *testing.T, ms []*nodetest.Masterd, skip *nodetest.Masterd) int {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	return nodetest.AwaitActive(t, ms, skip, func(m *nodetest.Masterd) (int, string) { return nodetest.ProbeMaster(hc, m.URL()) })
}

// A Cluster given one standby of three real masterd asks the active
// master it names; a request sent right after the active master is
// killed waits out the election and is answered by the new one, with
// the registry it took over.
func TestClusterFollowsRealStandbys(t *testing.T) {
	ms, a := haGroup(t, 3)
	active, standby := ms[a], ms[(a+1)%3]
	var urls []string
	for _, m := range ms {
		urls = append(urls, m.URL())
	}
	nodetest.Start(t, nodetest.Options{Flags: []string{"--node-name", "n1", "--master", strings.Join(urls, ",")}})

	c, err := NewCluster([]string{standby.URL()}, Options{Insecure: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := c.Nodes(ctx)
		if err != nil {
			t.Fatalf("Nodes() through the standby %s = %v, want the active master's list", standby.URL(), err)
		}
		if len(list.Nodes) == 1 && list.Nodes[0].State == rpc.NodeUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 is not listed up within 20s: %+v", list)
		}
		time.Sleep(20 * time.Millisecond) // polling masterd's list, which has no event to wait on
	}
	if got := c.Active(); got != active.URL() {
		t.Errorf("Active() = %q, want the active master %q", got, active.URL())
	}
	if got, want := c.Masters(), []string{standby.URL(), active.URL()}; !slices.Equal(got, want) {
		t.Errorf("Masters() = %q, want the standby given, then the active master it named: %q", got, want)
	}

	killed := time.Now()
	if err := active.Kill(); err != nil {
		t.Fatal(err)
	}
	list, err := c.Nodes(ctx)
	took := time.Since(killed)
	if err != nil {
		t.Fatalf("Nodes() sent right after the active master was killed = %v, want the new active master's answer", err)
	}
	if len(list.Nodes) != 1 || list.Nodes[0].Name != "n1" {
		t.Errorf("the new active master lists %+v, want n1, taken over from the registry", list.Nodes)
	}
	if got := c.Active(); got == active.URL() {
		t.Errorf("Active() is still the killed master %s", got)
	}
	t.Logf("Nodes() sent at the kill was answered by the new active master %s after %v", c.Active(), took.Round(time.Millisecond))
}
