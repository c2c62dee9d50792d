package masterd_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
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
