package master

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// oneRound are Options under which each master is asked once per
// request, in the order randN gives: the first of those not yet asked.
func oneRound() Options {
	return Options{Insecure: true, Timeout: 5 * time.Second,
		Retry: RetryPolicies{List: Policy{MaxAttempts: 1}}, randN: func(int64) int64 { return 0 }}
}

// A standby that names another active master on every answer (broken,
// or lying) makes a Cluster learn at most maxLearned masters beside those
// it was given: the given ones stay, the master named last is always
// among the learned ones, and the one named longest ago makes room. The
// list used to grow by one master a request, for ever.
func TestClusterLearnsBoundedMasters(t *testing.T) {
	const requests = maxLearned + 5
	dead := nodetest.DeadAddrs(t, requests)
	named := func(call int32) string { return "http://" + dead[int(call-1)%len(dead)] }
	liar := newFakeMasterd(t, func(w http.ResponseWriter, call int32) { nodetest.WriteNotActive(w, named(call)) })
	c, err := NewCluster([]string{liar.URL}, oneRound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k := range requests {
		_, err := c.Nodes(context.Background())
		if !errors.Is(err, rpc.ErrNotActive) || !errors.Is(err, rpc.ErrUnreachable) {
			t.Fatalf("Nodes() %d = %v; want the standby's not_active and the unreachable master it named", k+1, err)
		}
		got := c.Masters()
		var want []string
		for j := max(0, k+1-maxLearned); j <= k; j++ {
			want = append(want, "http://"+dead[j])
		}
		if len(got) == 0 || got[0] != liar.URL || !sameMembers(got[1:], want) {
			t.Fatalf("Masters() after %d requests, each answered by a standby naming a new master = %q;\nwant the standby given, then the last %d named: %q",
				k+1, got, len(want), want)
		}
	}
	if n := liar.calls.Load(); n != requests {
		t.Errorf("the standby was asked %d times, want %d: once a request", n, requests)
	}
}

// The master that answered last stays among the learned masters, however
// many others standbys name while it does not answer: it is the one the
// next request asks first. A master named that takes the place of one
// asked already in the same round is followed as the new master it is,
// not taken for one tried (which would end the round as an election).
func TestClusterKeepsTheMasterThatAnsweredLast(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	active := newFakeMasterd(t, func(w http.ResponseWriter, _ int32) {
		if !up.Load() {
			// Stepping down: a Cluster asks the other masters.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			body, _ := rpc.Marshal(rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindShuttingDown, "stopping")})
			w.Write(body)
			return
		}
		body, _ := rpc.Marshal(oneNode)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	const requests = maxLearned + 3
	dead := nodetest.DeadAddrs(t, requests)
	liar := newFakeMasterd(t, func(w http.ResponseWriter, call int32) {
		if call == 1 {
			nodetest.WriteNotActive(w, active.URL)
			return
		}
		nodetest.WriteNotActive(w, "http://"+dead[call-2])
	})
	c, err := NewCluster([]string{liar.URL}, oneRound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Nodes(ctx); err != nil || c.Active() != active.URL {
		t.Fatalf("Nodes() through the standby = %v, Active() %q; want the answer of %s", err, c.Active(), active.URL)
	}

	up.Store(false)
	for k := range requests {
		if _, err := c.Nodes(ctx); !errors.Is(err, rpc.ErrShuttingDown) {
			t.Fatalf("Nodes() %d while the active master stops = %v, want its shutting_down among the errors", k+1, err)
		}
	}
	if n := liar.calls.Load(); n != 1+requests {
		t.Errorf("the standby was asked %d times, want %d: once a request, each master it named taken for a new one", n, 1+requests)
	}
	if got := c.Masters(); len(got) != 1+maxLearned || !slices.Contains(got, active.URL) || !slices.Contains(got, "http://"+dead[requests-1]) {
		t.Fatalf("Masters() after %d more masters were named = %q; want %d, among them %s, which answered last, and the last named",
			requests, got, 1+maxLearned, active.URL)
	}

	up.Store(true)
	asked := liar.calls.Load()
	if list, err := c.Nodes(ctx); err != nil || list.GroupVersion != oneNode.GroupVersion {
		t.Fatalf("Nodes() once the active master is back = %+v, %v; want its list", list, err)
	}
	if n := liar.calls.Load(); n != asked {
		t.Errorf("the standby was asked again (%d times, was %d): the master that answered last was not asked first", n, asked)
	}
}

// sameMembers reports whether a and b hold the same strings, in any order.
func sameMembers(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
