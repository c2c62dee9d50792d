package masterd

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/registry"
	"github.com/noderpc/noderpc/rpc"
)

const testTimeout = 3 * time.Second

// newTestMembers is a registry over a bbolt store in a directory of the
// test's, on a fake clock, with a 3 s session timeout and a 30 s bound.
func newTestMembers(t *testing.T, dir string) (*members, *fakeClock, *registry.Bolt) {
	t.Helper()
	store, err := registry.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() }) // registered first: it runs after the members close
	ms, clock := loadTestMembers(t, store)
	return ms, clock, store
}

// loadTestMembers loads members from store on a fake clock; the test's
// cleanup closes them (store is the caller's to close).
func loadTestMembers(t *testing.T, store registry.Store) (*members, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	ms, err := loadMembers(store, clock, slog.New(slog.DiscardHandler), testTimeout, 30*time.Second, "http://127.0.0.1:1812", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ms.close)
	return ms, clock
}

func helloOf(name, boot string, calls ...rpc.CallSummary) *rpc.HelloRequest {
	return &rpc.HelloRequest{Node: name, URL: "http://127.0.0.1:1811", BootID: boot, Version: "v1", Protocol: 1, Calls: calls}
}

func mustHello(t *testing.T, ms *members, req *rpc.HelloRequest) rpc.Session {
	t.Helper()
	s, err := ms.hello(req)
	if err != nil {
		t.Fatalf("hello(%s): %v", req.Node, err)
	}
	return s
}

func stateOf(t *testing.T, ms *members, name string) rpc.NodeState {
	t.Helper()
	n, err := ms.get(name)
	if err != nil {
		t.Fatalf("get(%s): %v", name, err)
	}
	return n.State
}

// TestExpiry checks that a session lapses exactly one timeout after the
// last hello or renewal, no sooner, and that the node is then down on
// disk too, with a new group version.
func TestExpiry(t *testing.T) {
	ms, clock, store := newTestMembers(t, t.TempDir())
	s := mustHello(t, ms, helloOf("n1", "b1"))
	clock.Advance(testTimeout - time.Millisecond)
	if got := stateOf(t, ms, "n1"); got != rpc.NodeUp {
		t.Fatalf("1ms before the timeout: state %s, want up", got)
	}
	if _, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID}); err != nil {
		t.Fatalf("renew: %v", err)
	}
	clock.Advance(testTimeout - time.Millisecond)
	if got := stateOf(t, ms, "n1"); got != rpc.NodeUp {
		t.Fatalf("1ms before the timeout from the renewal: state %s, want up", got)
	}
	before := ms.groupVersion()
	clock.Advance(time.Millisecond)
	if got := stateOf(t, ms, "n1"); got != rpc.NodeDown {
		t.Fatalf("at the timeout from the renewal: state %s, want down", got)
	}
	if after := ms.groupVersion(); after != before+1 {
		t.Errorf("group version %d after the expiry, want %d", after, before+1)
	}
	snap, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if r := snap.Nodes["n1"]; r.Node.State != rpc.NodeDown || snap.Version != before+1 {
		t.Errorf("on disk after the expiry: n1 %s, version %d; want down, %d", r.Node.State, snap.Version, before+1)
	}
	if _, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID}); !errors.Is(err, rpc.ErrUnknownSession) {
		t.Errorf("renew of a lapsed session = %v, want unknown_session", err)
	}
}

// TestSessionTimeoutAsked checks the bounds on what a node may ask.
func TestSessionTimeoutAsked(t *testing.T) {
	ms, _, _ := newTestMembers(t, t.TempDir())
	for _, tc := range []struct {
		asked float64
		want  float64
	}{{0, 3}, {1, 3}, {10, 10}, {100, 30}} {
		req := helloOf("n1", "b1")
		req.SessionTimeout = tc.asked
		s := mustHello(t, ms, req)
		within := maxHold(rpc.Duration(tc.want)).Seconds()
		if s.Timeout != tc.want || s.RenewWithin != within {
			t.Errorf("hello asking %vs: timeout %v, renew within %v; want %v, %v", tc.asked, s.Timeout, s.RenewWithin, tc.want, within)
		}
	}
}

// held starts a renewal of s holding up to hold seconds, once the
// clock's pending timers are wantPending, and returns where its answer
// arrives.
func held(t *testing.T, ms *members, clock *fakeClock, node string, s rpc.Session, hold float64) <-chan rpc.Session {
	t.Helper()
	n := clock.pending()
	got := make(chan rpc.Session, 1)
	go func() {
		a, err := ms.renew(&rpc.RenewRequest{Node: node, Session: s.ID, GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion, Hold: hold})
		if err != nil {
			t.Errorf("held renew: %v", err)
		}
		got <- a
	}()
	clock.awaitPending(t, n+1) // its hold's timer
	return got
}

func answered(t *testing.T, got <-chan rpc.Session, what string) rpc.Session {
	t.Helper()
	select {
	case s := <-got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the renewal did not answer", what)
		return rpc.Session{}
	}
}

func notAnswered(t *testing.T, got <-chan rpc.Session, what string) {
	t.Helper()
	select {
	case s := <-got:
		t.Fatalf("%s: the renewal answered %+v, want it held", what, s)
	default:
	}
}

// TestRenewHold checks when a renewal answers: at once when the node is
// behind, at the end of its hold (capped at a third of the timeout), or
// early on a change of the group or of its configuration.
func TestRenewHold(t *testing.T) {
	ms, clock, _ := newTestMembers(t, t.TempDir())
	s := mustHello(t, ms, helloOf("n1", "b1"))
	clock.Advance(groupWakeDelay) // the wake of the hello itself

	behind, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID, GroupVersion: s.GroupVersion - 1, Hold: 1})
	if err != nil || behind.GroupVersion != s.GroupVersion {
		t.Fatalf("renew of a node behind = %+v, %v; want an answer at once", behind, err)
	}

	got := held(t, ms, clock, "n1", s, 60)
	clock.Advance(testTimeout/3 - time.Millisecond)
	notAnswered(t, got, "1ms before the hold cap")
	clock.Advance(time.Millisecond)
	if a := answered(t, got, "at the hold cap (a third of the timeout)"); a.GroupVersion != s.GroupVersion || a.ID != s.ID {
		t.Errorf("answer at the hold cap = %+v, want the same session and version", a)
	}

	got = held(t, ms, clock, "n1", s, 60)
	cfg, err := ms.setConfig(&rpc.SetConfigRequest{Node: "n1", Set: rpc.Config{"k": []byte(`2`)}})
	if err != nil {
		t.Fatal(err)
	}
	a := answered(t, got, "after a change of the node's configuration")
	if a.ConfigVersion == s.ConfigVersion || string(a.Config["k"]) != "2" || string(cfg.Effective["k"]) != "2" {
		t.Errorf("answer after SetConfig = %+v, want the new configuration and its version", a)
	}
	s = a

	got = held(t, ms, clock, "n1", s, 60)
	mustHello(t, ms, helloOf("n2", "b2"))
	notAnswered(t, got, "before the group wake")
	clock.Advance(groupWakeDelay)
	if a := answered(t, got, "after another node joined"); a.GroupVersion != s.GroupVersion+1 {
		t.Errorf("answer after a join: group version %d, want %d", a.GroupVersion, s.GroupVersion+1)
	}
}

// TestUnknownSession checks that renewals and leaves of sessions masterd
// does not hold are refused with unknown_session, and that a leave marks
// the node down at once.
func TestUnknownSession(t *testing.T) {
	ms, _, _ := newTestMembers(t, t.TempDir())
	s := mustHello(t, ms, helloOf("n1", "b1"))
	for _, tc := range []struct{ node, session string }{{"n1", "other"}, {"nobody", s.ID}} {
		if _, err := ms.renew(&rpc.RenewRequest{Node: tc.node, Session: tc.session}); !errors.Is(err, rpc.ErrUnknownSession) {
			t.Errorf("renew(%s, %s) = %v, want unknown_session", tc.node, tc.session, err)
		}
		if err := ms.leave(&rpc.LeaveRequest{Node: tc.node, Session: tc.session}); !errors.Is(err, rpc.ErrUnknownSession) {
			t.Errorf("leave(%s, %s) = %v, want unknown_session", tc.node, tc.session, err)
		}
	}
	if err := ms.leave(&rpc.LeaveRequest{Node: "n1", Session: s.ID}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if got := stateOf(t, ms, "n1"); got != rpc.NodeDown {
		t.Errorf("after the leave: %s, want down", got)
	}
	if _, err := ms.get("nobody"); !errors.Is(err, rpc.ErrUnknownNode) {
		t.Errorf("get(nobody) = %v, want unknown_node", err)
	}
}

// TestNewBootLosesCalls checks that a hello with a new boot id marks the
// unfinished calls of the old boot lost, keeps the finished ones out,
// and keeps the lost ones across further hellos of the new boot.
func TestNewBootLosesCalls(t *testing.T) {
	ms, _, _ := newTestMembers(t, t.TempDir())
	running := rpc.CallSummary{ID: "c1", FnName: "sleep", State: rpc.StateRunning}
	done := rpc.CallSummary{ID: "c2", FnName: "echo", State: rpc.StateSucceeded}
	mustHello(t, ms, helloOf("n1", "b1", running, done))
	fresh := rpc.CallSummary{ID: "c3", FnName: "echo", State: rpc.StateRunning}
	mustHello(t, ms, helloOf("n1", "b2", fresh))
	mustHello(t, ms, helloOf("n1", "b2", fresh))
	n, err := ms.get("n1")
	if err != nil {
		t.Fatal(err)
	}
	want := []rpc.NodeCall{{CallSummary: running, Lost: true}, {CallSummary: fresh}}
	if len(n.Calls) != len(want) || n.Calls[0] != want[0] || n.Calls[1] != want[1] {
		t.Errorf("calls after a new boot = %+v, want %+v", n.Calls, want)
	}
}

// TestRestartMarksDown checks that a registry loaded from the store of
// a masterd that stopped knows every node, each down, with the
// configuration, in one new group version.
func TestRestartMarksDown(t *testing.T) {
	dir := t.TempDir()
	ms, _, store := newTestMembers(t, dir)
	mustHello(t, ms, helloOf("n1", "b1"))
	mustHello(t, ms, helloOf("n2", "b2"))
	if _, err := ms.setConfig(&rpc.SetConfigRequest{Node: "later", Set: rpc.Config{"k": []byte(`true`)}}); err != nil {
		t.Fatal(err)
	}
	version := ms.groupVersion()
	ms.close()
	store.Close()

	ms2, _, _ := newTestMembers(t, dir)
	l := ms2.list()
	if len(l.Nodes) != 2 || l.Nodes[0].State != rpc.NodeDown || l.Nodes[1].State != rpc.NodeDown {
		t.Errorf("nodes after a restart = %+v, want n1 and n2, both down", l.Nodes)
	}
	if l.GroupVersion != version+1 {
		t.Errorf("group version after a restart = %d, want %d", l.GroupVersion, version+1)
	}
	if c := ms2.config("later"); string(c.Own["k"]) != "true" {
		t.Errorf("configuration of a node that never joined, after a restart = %+v, want k=true", c)
	}
}

// TestLostCallsBounded checks that a node rebooting again and again with
// unfinished calls does not grow its record without bound: masterd keeps
// the maxLostCalls most recently lost.
func TestLostCallsBounded(t *testing.T) {
	ms, _, _ := newTestMembers(t, t.TempDir())
	const perBoot = 100
	boots := maxLostCalls/perBoot + 3
	id := 0
	for b := range boots {
		calls := make([]rpc.CallSummary, perBoot)
		for i := range calls {
			calls[i] = rpc.CallSummary{ID: fmt.Sprintf("c%d", id), FnName: "sleep", State: rpc.StateRunning}
			id++
		}
		mustHello(t, ms, helloOf("n1", fmt.Sprintf("b%d", b), calls...))
	}
	n, err := ms.get("n1")
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, c := range n.Calls {
		if c.Lost {
			lost++
		}
	}
	if lost != maxLostCalls || len(n.Calls) != maxLostCalls+perBoot {
		t.Fatalf("after %d boots: %d calls, %d lost; want %d lost and the %d of the last boot", boots, len(n.Calls), lost, maxLostCalls, perBoot)
	}
	// The calls of the last boot are the last perBoot ids; the lost ones
	// kept are the maxLostCalls before them.
	if first, want := n.Calls[0].ID, fmt.Sprintf("c%d", id-perBoot-maxLostCalls); first != want {
		t.Errorf("oldest lost call kept = %s, want %s: the most recently lost are kept", first, want)
	}
}

// TestTwinNodesWarned checks that a hello replacing a live session of
// the same name from another URL is logged as a warning: two nodes share
// a name and take each other's session forever, which the log of joins
// alone does not tell.
func TestTwinNodesWarned(t *testing.T) {
	store, err := registry.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var mu sync.Mutex
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return log.Write(p)
	}), nil)
	ms, err := loadMembers(store, newFakeClock(), slog.New(h), testTimeout, 30*time.Second, "http://127.0.0.1:1812", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ms.close()
		store.Close()
	})
	mustHello(t, ms, helloOf("n1", "b1"))
	mustHello(t, ms, helloOf("n1", "b1")) // the same node again: no warning
	twin := helloOf("n1", "b2")
	twin.URL = "http://127.0.0.1:1911"
	mustHello(t, ms, twin)
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(log.String(), "level=WARN"); n != 1 || !strings.Contains(log.String(), "http://127.0.0.1:1911") {
		t.Errorf("log has %d warnings, want 1 naming both URLs:\n%s", n, log.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// failingStore is a Bolt store whose writes fail while fail is set, as
// on a full or failing disk.
type failingStore struct {
	*registry.Bolt
	mu   sync.Mutex
	fail bool
}

func (s *failingStore) Write(c registry.Change) error {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return errors.New("disk failed")
	}
	return s.Bolt.Write(c)
}

// TestFailedHelloLeavesNodeDown checks that a hello whose write fails,
// having ended the node's live session, leaves the node listed down:
// listed up without a session, nothing would ever mark it down.
func TestFailedHelloLeavesNodeDown(t *testing.T) {
	bolt, err := registry.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	store := &failingStore{Bolt: bolt}
	ms, _ := loadTestMembers(t, store)
	mustHello(t, ms, helloOf("n1", "b1"))
	store.mu.Lock()
	store.fail = true
	store.mu.Unlock()
	before := ms.groupVersion()
	if _, err := ms.hello(helloOf("n1", "b2")); err == nil {
		t.Fatal("hello with a failing store succeeded")
	}
	n, err := ms.get("n1")
	if err != nil {
		t.Fatal(err)
	}
	if n.State != rpc.NodeDown || ms.groupVersion() <= before {
		t.Errorf("after a failed hello: n1 %s at group version %d (was %d); want down at a new version", n.State, ms.groupVersion(), before)
	}
}

// hookStore is a Bolt store that runs hook before each write.
type hookStore struct {
	*registry.Bolt
	hook func()
}

func (s *hookStore) Write(c registry.Change) error {
	s.hook()
	return s.Bolt.Write(c)
}

// TestHelloDuringStopIsShuttingDown checks that a hello masterd stops
// during is answered shutting_down, which sends the node to another
// master, not that a later hello replaced it.
func TestHelloDuringStopIsShuttingDown(t *testing.T) {
	bolt, err := registry.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &hookStore{Bolt: bolt, hook: func() {}}
	ms, err := loadMembers(store, newFakeClock(), slog.New(slog.DiscardHandler), testTimeout, 30*time.Second, "http://127.0.0.1:1812", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	store.hook = ms.close
	if _, err := ms.hello(helloOf("n1", "b1")); !errors.Is(err, rpc.ErrShuttingDown) {
		t.Errorf("hello as masterd stops = %v, want shutting_down", err)
	}
}

// TestHelloDuringStepDownIsNotActive checks that a hello whose write
// was under way as masterd stepped down is answered not_active, which
// sends the node to the active master, not shutting_down.
func TestHelloDuringStepDownIsNotActive(t *testing.T) {
	bolt, err := registry.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	store := &hookStore{Bolt: bolt, hook: func() {}}
	ms, _ := loadTestMembers(t, store)
	store.hook = ms.depose
	if _, err := ms.hello(helloOf("n1", "b1")); !errors.Is(err, errNotActive) {
		t.Errorf("hello as masterd steps down = %v, want errNotActive", err)
	}
}

// TestOneHeldRenewalPerSession checks that a second renewal to hold
// answers the one held before at once, so that masterd holds one
// renewal per session however many a node sends: 5,000 concurrent
// renewals of one session were all held, each a goroutine and a
// connection, until their holds ended.
func TestOneHeldRenewalPerSession(t *testing.T) {
	ms, clock, _ := newTestMembers(t, t.TempDir())
	s := mustHello(t, ms, helloOf("n1", "b1"))
	clock.Advance(groupWakeDelay) // the wake of the hello itself

	// renewal starts a renewal to hold and returns where it answers.
	renewal := func() <-chan rpc.Session {
		got := make(chan rpc.Session, 1)
		go func() {
			a, err := ms.renew(&rpc.RenewRequest{Node: "n1", Session: s.ID, GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion, Hold: 60})
			if err != nil {
				t.Errorf("held renew: %v", err)
			}
			got <- a
		}()
		return got
	}
	held := clock.pending()
	first := renewal()
	clock.awaitPending(t, held+1) // its hold's timer
	second := renewal()
	if a := answered(t, first, "a held renewal, once another is held"); a.ID != s.ID {
		t.Errorf("the replaced renewal answered %+v, want the session", a)
	}
	clock.awaitPending(t, held+1) // the second's hold, the first's stopped
	notAnswered(t, second, "the renewal held now")
	third := renewal()
	answered(t, second, "the second renewal, once a third is held")
	clock.awaitPending(t, held+1)
	clock.Advance(testTimeout / 3)
	answered(t, third, "the last renewal, at its hold's end")
}
