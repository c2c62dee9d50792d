package masterd

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/registry"
	"github.com/noderpc/noderpc/rpc"
)

// TestTakeOver checks what a newly elected master makes of the registry
// it loads: a node listed up stays up for its session timeout from the
// takeover, and is down after it unless it said hello; its old session
// is unknown; a node listed down stays down. Nothing is written until a
// session lapses.
func TestTakeOver(t *testing.T) {
	store, err := registry.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	up := func(name string) registry.Record {
		return registry.Record{Node: rpc.Node{Name: name, State: rpc.NodeUp, URL: "http://127.0.0.1:1811", BootID: "b-" + name, SessionTimeout: testTimeout.Seconds()}, Version: 1}
	}
	down := registry.Record{Node: rpc.Node{Name: "n3", State: rpc.NodeDown, URL: "http://127.0.0.1:1811", BootID: "b-n3"}, Version: 1}
	if err := store.Write(registry.Change{Version: 1, Nodes: []registry.Record{up("n1"), up("n2"), down}}); err != nil {
		t.Fatal(err)
	}
	snap, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	ms := takeOver(snap, store, clock, slog.New(slog.DiscardHandler), testTimeout, 30*time.Second, []string{"http://m1:1812", "http://m2:1812"}, false)
	defer ms.close()
	for name, want := range map[string]rpc.NodeState{"n1": rpc.NodeUp, "n2": rpc.NodeUp, "n3": rpc.NodeDown} {
		if got := stateOf(t, ms, name); got != want {
			t.Errorf("%s after the takeover: %s, want %s", name, got, want)
		}
	}
	if _, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: "a session of the previous master"}); !errors.Is(err, rpc.ErrUnknownSession) {
		t.Errorf("renewal of a session of the previous master = %v, want unknown_session", err)
	}

	clock.Advance(testTimeout - time.Millisecond)
	s := mustHello(t, ms, helloOf("n1", "b-n1"))
	if len(s.Masters) != 2 {
		t.Errorf("session masters = %v, want both candidates", s.Masters)
	}
	clock.Advance(time.Millisecond)
	if got := stateOf(t, ms, "n2"); got != rpc.NodeDown {
		t.Errorf("n2, silent for its session timeout since the takeover: %s, want down", got)
	}
	if got := stateOf(t, ms, "n1"); got != rpc.NodeUp {
		t.Errorf("n1, which said hello within its timeout: %s, want up", got)
	}
	snap, err = store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Nodes["n2"].Node.State != rpc.NodeDown || snap.Nodes["n1"].Node.State != rpc.NodeUp {
		t.Errorf("stored after the expiry: n1 %s, n2 %s; want up, down", snap.Nodes["n1"].Node.State, snap.Nodes["n2"].Node.State)
	}
}

// TestDepose checks a registry whose master stepped down: a held
// renewal answers not_active at once, every request after it too, no
// session lapses (nothing is written), and a write refused by its store
// answers not_active rather than internal.
func TestDepose(t *testing.T) {
	ms, clock, store := newTestMembers(t, t.TempDir())
	s := mustHello(t, ms, helloOf("n1", "b1"))
	clock.Advance(groupWakeDelay)
	got := make(chan error, 1)
	n := clock.pending()
	go func() {
		_, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID, GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion, Hold: 60})
		got <- err
	}()
	clock.awaitPending(t, n+1)
	ms.depose()
	select {
	case err := <-got:
		if !errors.Is(err, errNotActive) {
			t.Errorf("the renewal held at the step-down = %v, want errNotActive", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the renewal held at the step-down did not answer")
	}
	if _, err := ms.hello(helloOf("n2", "b2")); !errors.Is(err, errNotActive) {
		t.Errorf("hello after the step-down = %v, want errNotActive", err)
	}
	if _, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID}); !errors.Is(err, errNotActive) {
		t.Errorf("renew after the step-down = %v, want errNotActive", err)
	}
	if err := ms.leave(&rpc.LeaveRequest{Node: "n1", Session: s.ID}); !errors.Is(err, errNotActive) {
		t.Errorf("leave after the step-down = %v, want errNotActive", err)
	}
	if _, err := ms.setConfig(&rpc.SetConfigRequest{Set: rpc.Config{"k": []byte(`1`)}}); !errors.Is(err, errNotActive) {
		t.Errorf("set config after the step-down = %v, want errNotActive", err)
	}
	clock.Advance(10 * testTimeout)
	snap, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Nodes["n1"].Node.State != rpc.NodeUp {
		t.Errorf("n1 stored after the step-down and its timeout: %s, want up as the active master left it", snap.Nodes["n1"].Node.State)
	}

	// A write the store refuses (stopped, or fenced by etcd) is
	// not_active for the request that made it.
	ts := &termStore{Store: store, fenced: func(error) {}}
	ts.stop()
	ms2 := newMembers(&registry.Snapshot{}, ts, clock, slog.New(slog.DiscardHandler), testTimeout, 30*time.Second, nil)
	if _, err := ms2.hello(helloOf("n3", "b3")); !errors.Is(err, errNotActive) {
		t.Errorf("hello whose write the stopped store refused = %v, want errNotActive", err)
	}
	fenced := ms2.writeErr(registry.ErrFenced, "a test write")
	if !errors.Is(fenced, errNotActive) {
		t.Errorf("writeErr(ErrFenced) = %v, want errNotActive", fenced)
	}

	// A write etcd refuses as fenced ends the term through the store.
	var ended error
	ts = &termStore{Store: fencedStore{store}, fenced: func(err error) { ended = err }}
	if err := ts.Write(registry.Change{Version: 9}); !errors.Is(err, registry.ErrFenced) || !errors.Is(ended, registry.ErrFenced) {
		t.Errorf("a fenced write = %v, and ended the term with %v; want ErrFenced both", err, ended)
	}
}

// fencedStore is a store whose every write is fenced, as etcd's is once
// another master was elected.
type fencedStore struct{ registry.Store }

func (fencedStore) Write(registry.Change) error {
	return fmt.Errorf("registry: writing: %w", registry.ErrFenced)
}
