package registry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// opener opens a store afresh over the same data each time it is
// called; the test's cleanup closes what it opened.
type opener func(t *testing.T) Store

func boltOpener(t *testing.T) opener {
	dir := t.TempDir()
	return func(t *testing.T) Store {
		s := openT(t, dir)
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func etcdOpener(cli *clientv3.Client, prefix string) opener {
	return func(t *testing.T) Store {
		s, err := OpenEtcd(cli, prefix, Fence{})
		if err != nil {
			t.Fatalf("OpenEtcd(%s): %v", prefix, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// TestStores runs the behaviour every Store shares against the bolt
// store and the etcd one (on one etcd for every case, each under a
// prefix of its own).
func TestStores(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, open opener)
	}{
		{"RoundTrip", testRoundTrip},
		{"OutOfOrder", testOutOfOrder},
		{"ConcurrentMonotonic", testConcurrentMonotonic},
		{"WriteAfterClose", testWriteAfterClose},
		{"NamelessNode", testNamelessNode},
	}
	t.Run("bolt", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { c.run(t, boltOpener(t)) })
		}
	})
	t.Run("etcd", func(t *testing.T) {
		cli := nodetest.EtcdClient(t, nodetest.EtcdEndpoints(t))
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { c.run(t, etcdOpener(cli, nodetest.EtcdPrefix(t))) })
		}
	})
}

func load(t *testing.T, s Store) *Snapshot {
	t.Helper()
	snap, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

// testRoundTrip writes every kind of change and reads it back, from the
// store that wrote it and from a new one over the same data.
func testRoundTrip(t *testing.T, open opener) {
	s := open(t)
	if got, want := load(t, s), (&Snapshot{Nodes: map[string]Record{}, Configs: map[string]Entry{}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Load of a new store = %+v, want %+v", got, want)
	}
	changes := []Change{
		{Version: 1, Nodes: []Record{{Node: node("a", "b1", rpc.NodeUp), Version: 1}}},
		{Version: 2, Nodes: []Record{{Node: node("b", "b2", rpc.NodeUp), Version: 2}, {Node: node("c/d", "b3", rpc.NodeUp), Version: 2}}},
		{Config: &ConfigChange{Entry: Entry{Keys: rpc.Config{"k": []byte(`1`)}, Stamp: 1}}},
		{Config: &ConfigChange{Node: "never-joined", Entry: Entry{Keys: rpc.Config{"k": []byte(`"x"`)}, Stamp: 2}}},
		{Version: 3, Nodes: []Record{{Node: node("a", "b1", rpc.NodeDown), Version: 3}}},
		{Masters: []string{"https://m1:1812", "https://m2:1812"}},
		{Config: &ConfigChange{Node: "b", Entry: Entry{Keys: rpc.Config{"j": []byte(`true`)}, Stamp: 3}}},
		{Config: &ConfigChange{Node: "b", Entry: Entry{Keys: rpc.Config{"j": []byte(`false`)}, Stamp: 4}}},
		{Masters: []string{"https://m2:1812"}},
		{},
	}
	for _, c := range changes {
		if err := s.Write(c); err != nil {
			t.Fatalf("Write(%+v): %v", c, err)
		}
	}
	want := &Snapshot{
		Version: 3, Stamp: 4,
		Nodes: map[string]Record{
			"a":   {Node: node("a", "b1", rpc.NodeDown), Version: 3},
			"b":   {Node: node("b", "b2", rpc.NodeUp), Version: 2},
			"c/d": {Node: node("c/d", "b3", rpc.NodeUp), Version: 2},
		},
		Group: Entry{Keys: rpc.Config{"k": []byte(`1`)}, Stamp: 1},
		Configs: map[string]Entry{
			"never-joined": {Keys: rpc.Config{"k": []byte(`"x"`)}, Stamp: 2},
			"b":            {Keys: rpc.Config{"j": []byte(`false`)}, Stamp: 4},
		},
		Masters: []string{"https://m2:1812"},
	}
	if got := load(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("Load after the writes =\n%+v\nwant\n%+v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := load(t, open(t)); !reflect.DeepEqual(got, want) {
		t.Errorf("Load of a store opened anew =\n%+v\nwant\n%+v", got, want)
	}
}

// testOutOfOrder: a record older than the stored one is dropped, an
// equal or newer one replaces it, and the version never goes back.
func testOutOfOrder(t *testing.T, open opener) {
	s := open(t)
	steps := []struct {
		c        Change
		wantBoot string
		wantVer  uint64
	}{
		{Change{Version: 5, Nodes: []Record{{Node: node("a", "five", rpc.NodeUp), Version: 5}}}, "five", 5},
		{Change{Version: 3, Nodes: []Record{{Node: node("a", "three", rpc.NodeUp), Version: 3}}}, "five", 5},
		{Change{Version: 5, Nodes: []Record{{Node: node("a", "five-again", rpc.NodeUp), Version: 5}}}, "five-again", 5},
		{Change{Version: 6, Nodes: []Record{{Node: node("a", "six", rpc.NodeDown), Version: 6}}}, "six", 6},
	}
	for _, st := range steps {
		if err := s.Write(st.c); err != nil {
			t.Fatalf("Write(version %d): %v", st.c.Version, err)
		}
		got := load(t, s)
		if r := got.Nodes["a"]; r.Node.BootID != st.wantBoot || got.Version != st.wantVer {
			t.Errorf("after Write(version %d, boot %s): node a boot %s, store version %d; want %s, %d",
				st.c.Version, st.c.Nodes[0].Node.BootID, r.Node.BootID, got.Version, st.wantBoot, st.wantVer)
		}
	}
}

// testConcurrentMonotonic: concurrent writes of one node and of many
// leave the highest version of each, whatever order they commit in.
func testConcurrentMonotonic(t *testing.T, open opener) {
	s := open(t)
	var wg sync.WaitGroup
	for v := uint64(1); v <= 50; v++ {
		wg.Go(func() {
			state := rpc.NodeUp
			if v%2 == 0 {
				state = rpc.NodeDown
			}
			c := Change{Version: v, Nodes: []Record{{Node: node("a", "b", state), Version: v}, {Node: node(fmt.Sprintf("n%02d", v), "b", rpc.NodeUp), Version: v}}}
			if err := s.Write(c); err != nil {
				t.Errorf("Write(version %d): %v", v, err)
			}
		})
	}
	wg.Wait()
	if err := s.Write(Change{Version: 7, Nodes: []Record{{Node: node("a", "old", rpc.NodeUp), Version: 7}}}); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)
	if got.Version != 50 || got.Nodes["a"].Version != 50 || got.Nodes["a"].Node.State != rpc.NodeDown || len(got.Nodes) != 51 {
		t.Errorf("after versions 1..50 and a late 7: version %d, node a at %d %s, %d nodes; want 50, 50, down, 51",
			got.Version, got.Nodes["a"].Version, got.Nodes["a"].Node.State, len(got.Nodes))
	}
}

func testWriteAfterClose(t *testing.T, open opener) {
	s := open(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Write(Change{Version: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}

func testNamelessNode(t *testing.T, open opener) {
	s := open(t)
	if err := s.Write(Change{Version: 1, Nodes: []Record{{Version: 1}}}); err == nil || !strings.Contains(err.Error(), "without a name") {
		t.Errorf("Write of a nameless node = %v, want an error that says so", err)
	}
	if got := load(t, s); got.Version != 0 || len(got.Nodes) != 0 {
		t.Errorf("after a refused write: %+v, want nothing stored", got)
	}
}

// TestEtcdStore holds the etcd store's own cases, on one etcd.
func TestEtcdStore(t *testing.T) {
	cli := nodetest.EtcdClient(t, nodetest.EtcdEndpoints(t))
	t.Run("BadArguments", func(t *testing.T) { testEtcdBadArguments(t, cli) })
	t.Run("Large", func(t *testing.T) { testEtcdLarge(t, cli) })
	t.Run("TwoWriters", func(t *testing.T) { testEtcdTwoWriters(t, cli) })
	t.Run("FenceResign", func(t *testing.T) {
		testFence(t, cli, func(ctx context.Context, e *concurrency.Election, _ *concurrency.Session) error { return e.Resign(ctx) })
	})
	t.Run("FenceLeaseRevoked", func(t *testing.T) {
		testFence(t, cli, func(ctx context.Context, _ *concurrency.Election, s *concurrency.Session) error {
			_, err := cli.Revoke(ctx, s.Lease())
			return err
		})
	})
	t.Run("FenceNeverCreated", func(t *testing.T) { testFenceNeverCreated(t, cli) })
	t.Run("Unreachable", testEtcdUnreachable)
}

// testEtcdUnreachable: with etcd cut off (a proxy between the store's
// client and its own etcd), a Write fails within EtcdTimeout, not
// fenced, and Close returns; once etcd is back, writes succeed again.
func testEtcdUnreachable(t *testing.T) {
	e := nodetest.StartEtcd(t)
	p := nodetest.StartProxy(t, e.ClientAddr())
	cli := nodetest.EtcdClient(t, []string{"http://" + p.Addr()})
	s, err := OpenEtcd(cli, nodetest.EtcdPrefix(t), Fence{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(Change{Version: 1}); err != nil {
		t.Fatalf("Write through the passing proxy: %v", err)
	}
	for _, mode := range []nodetest.ProxyMode{nodetest.ProxyStall, nodetest.ProxyCut} {
		p.Set(mode, 0)
		start := time.Now()
		err := s.Write(Change{Version: 2})
		took := time.Since(start)
		t.Logf("a Write with etcd cut off (%s) failed after %s: %v", mode, took.Round(time.Millisecond), err)
		if err == nil || errors.Is(err, ErrFenced) || took > EtcdTimeout+2*time.Second {
			t.Errorf("Write with etcd cut off (%s) = %v after %s, want an error other than ErrFenced within %s", mode, err, took, EtcdTimeout)
		}
		p.Set(nodetest.ProxyPass, 0)
		deadline := time.Now().Add(20 * time.Second)
		for err := s.Write(Change{Version: 3}); err != nil; err = s.Write(Change{Version: 3}) {
			if time.Now().After(deadline) {
				t.Fatalf("Write once etcd is back (was %s): %v", mode, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testEtcdBadArguments(t *testing.T, cli *clientv3.Client) {
	for _, c := range []struct {
		name   string
		cli    *clientv3.Client
		prefix string
		fence  Fence
	}{
		{"no client", nil, "/p", Fence{}},
		{"empty prefix", cli, "", Fence{}},
		{"relative prefix", cli, "noderpc", Fence{}},
		{"prefix ending in /", cli, "/noderpc/", Fence{}},
		{"fence without revision", cli, "/p", Fence{Key: "/p/election/1"}},
		{"fence without key", cli, "/p", Fence{Revision: 3}},
	} {
		if _, err := OpenEtcd(c.cli, c.prefix, c.fence); !errors.Is(err, ErrBadEtcdStore) {
			t.Errorf("OpenEtcd with %s (%q, %+v) = %v, want ErrBadEtcdStore", c.name, c.prefix, c.fence, err)
		}
	}
}

// testEtcdLarge writes one change of more nodes than one Txn and one
// page of Load take, and reads every one back.
func testEtcdLarge(t *testing.T, cli *clientv3.Client) {
	prefix := nodetest.EtcdPrefix(t)
	s, err := OpenEtcd(cli, prefix, Fence{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = loadPage + txnItems + 7
	c := Change{Version: 9}
	for i := range n {
		c.Nodes = append(c.Nodes, Record{Node: node(fmt.Sprintf("node-%04d", i), "b", rpc.NodeUp), Version: 9})
	}
	start := time.Now()
	if err := s.Write(c); err != nil {
		t.Fatalf("Write of %d nodes: %v", n, err)
	}
	wrote := time.Since(start)
	start = time.Now()
	got := load(t, s)
	t.Logf("%d nodes: written in %s, loaded in %s", n, wrote.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if len(got.Nodes) != n || got.Version != 9 {
		t.Fatalf("Load after a write of %d nodes at version 9: %d nodes, version %d", n, len(got.Nodes), got.Version)
	}
	for _, r := range c.Nodes {
		if !reflect.DeepEqual(got.Nodes[r.Node.Name], r) {
			t.Fatalf("node %s loaded as %+v, want %+v", r.Node.Name, got.Nodes[r.Node.Name], r)
		}
	}
}

// testEtcdTwoWriters: two stores writing the same keys at once (each
// read of one is made stale by the other's write) leave the highest
// version of each key: a Txn whose read went stale is retried.
func testEtcdTwoWriters(t *testing.T, cli *clientv3.Client) {
	open := etcdOpener(cli, nodetest.EtcdPrefix(t))
	stores := []Store{open(t), open(t)}
	var wg sync.WaitGroup
	for v := uint64(1); v <= 60; v++ {
		wg.Go(func() {
			c := Change{Version: v, Nodes: []Record{{Node: node("a", fmt.Sprint(v), rpc.NodeUp), Version: v}},
				Config: &ConfigChange{Node: "a", Entry: Entry{Stamp: v}}}
			if err := stores[v%2].Write(c); err != nil {
				t.Errorf("Write(version %d) to store %d: %v", v, v%2, err)
			}
		})
	}
	wg.Wait()
	got := load(t, stores[0])
	if got.Version != 60 || got.Stamp != 60 || got.Nodes["a"].Node.BootID != "60" {
		t.Errorf("after versions 1..60 through two stores: version %d, stamp %d, node a by %s; want 60, 60, 60",
			got.Version, got.Stamp, got.Nodes["a"].Node.BootID)
	}
}

// campaign wins the election on prefix for value with a session of its
// own, and returns the election and the session.
func campaign(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix, value string) (*concurrency.Election, *concurrency.Session) {
	t.Helper()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatalf("a session for %s: %v", value, err)
	}
	t.Cleanup(func() { sess.Close() })
	e := concurrency.NewElection(sess, prefix+"/election")
	if err := e.Campaign(ctx, value); err != nil {
		t.Fatalf("campaign of %s: %v", value, err)
	}
	return e, sess
}

// openFenced opens the store under prefix fenced on e's campaign, closed
// by the test's cleanup.
func openFenced(t *testing.T, cli *clientv3.Client, prefix string, e *concurrency.Election) *Etcd {
	t.Helper()
	s, err := OpenEtcd(cli, prefix, Fence{Key: e.Key(), Revision: e.Rev()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testFence: a store fenced on candidate A's election writes while A
// holds it; once A lost it by lose and B won, A's store fails with
// ErrFenced, at once and ever after, and writes nothing, while B's
// store writes.
func testFence(t *testing.T, cli *clientv3.Client, lose func(context.Context, *concurrency.Election, *concurrency.Session) error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	prefix := nodetest.EtcdPrefix(t)
	a, as := campaign(t, ctx, cli, prefix, "http://a")
	sa := openFenced(t, cli, prefix, a)
	if err := sa.Write(Change{Version: 1, Nodes: []Record{{Node: node("n", "by-a", rpc.NodeUp), Version: 1}}}); err != nil {
		t.Fatalf("Write of the elected A: %v", err)
	}

	won := make(chan *concurrency.Election, 1)
	go func() {
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Errorf("a session for B: %v", err)
			close(won)
			return
		}
		t.Cleanup(func() { sess.Close() })
		e := concurrency.NewElection(sess, prefix+"/election")
		if err := e.Campaign(ctx, "http://b"); err != nil {
			t.Errorf("campaign of B: %v", err)
			close(won)
			return
		}
		won <- e
	}()
	if err := lose(ctx, a, as); err != nil {
		t.Fatalf("A losing the election: %v", err)
	}
	b := <-won
	if b == nil {
		t.FailNow()
	}
	sb := openFenced(t, cli, prefix, b)
	if err := sb.Write(Change{Version: 2, Nodes: []Record{{Node: node("n", "by-b", rpc.NodeUp), Version: 2}}}); err != nil {
		t.Fatalf("Write of the elected B: %v", err)
	}
	for i := range 2 {
		err := sa.Write(Change{Version: 3, Nodes: []Record{{Node: node("n", "by-deposed-a", rpc.NodeDown), Version: 3}}})
		if !errors.Is(err, ErrFenced) {
			t.Fatalf("Write %d of the deposed A = %v, want ErrFenced", i+1, err)
		}
	}
	got := load(t, sb)
	if r := got.Nodes["n"]; r.Node.BootID != "by-b" || got.Version != 2 {
		t.Errorf("after B's write and the deposed A's: node n by %s, version %d; want by-b, 2", r.Node.BootID, got.Version)
	}
}

// testFenceNeverCreated: a store fenced on a key that was never created
// writes nothing.
func testFenceNeverCreated(t *testing.T, cli *clientv3.Client) {
	prefix := nodetest.EtcdPrefix(t)
	s, err := OpenEtcd(cli, prefix, Fence{Key: prefix + "/election/none", Revision: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(Change{Version: 1, Masters: []string{"http://x"}}); !errors.Is(err, ErrFenced) {
		t.Errorf("Write fenced on a key never created = %v, want ErrFenced", err)
	}
	if got := load(t, s); got.Version != 0 || got.Masters != nil {
		t.Errorf("after a fenced write: %+v, want nothing stored", got)
	}
}
