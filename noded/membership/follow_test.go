package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// fakeMaster is a master on loopback whose answers a test decides: a
// standby answering not_active, or an active master granting a session.
// Real masterd standbys are tested in integration_test.go; these cases
// (masters naming each other, a renewal answered not_active) are ones a
// real group produces only in races too short to catch.
type fakeMaster struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string // the paths called, in order
	// answer answers one call of path.
	answer func(w http.ResponseWriter, path string)
}

func newFakeMaster(t *testing.T, answer func(w http.ResponseWriter, path string)) *fakeMaster {
	t.Helper()
	f := &fakeMaster{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, r.URL.Path)
		f.mu.Unlock()
		f.answer(w, r.URL.Path)
	}))
	t.Cleanup(f.Close)
	return f
}

// called returns the paths called so far.
func (f *fakeMaster) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// standby is a fake master answering every call not_active, naming
// active.
func standby(t *testing.T, active string) *fakeMaster {
	return newFakeMaster(t, func(w http.ResponseWriter, _ string) { nodetest.WriteNotActive(w, active) })
}

// activeMaster is a fake master that grants a session to every hello,
// naming itself the one master of the group, and holds every renewal
// until the test ends.
func activeMaster(t *testing.T) *fakeMaster {
	t.Helper()
	stop := make(chan struct{})
	var f *fakeMaster
	f = newFakeMaster(t, func(w http.ResponseWriter, path string) {
		if path == rpc.PathRenew {
			<-stop
		}
		s := session
		s.Masters = []string{f.URL}
		body, _ := rpc.Marshal(s)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	// Before the server's Close, which waits for the held renewals.
	t.Cleanup(func() { close(stop) })
	return f
}

// startMember runs a Member of masters until the test ends; its
// back-offs go to clk, its log to log.
func startMember(t *testing.T, masters []string, clk *clock, log *nodetest.SyncBuffer) *Member {
	t.Helper()
	m, err := New(Config{
		Masters: masters,
		Node:    "node1", URL: "http://127.0.0.1:1811", BootID: "boot1", Facts: facts,
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rand:   func(n int64) int64 { return n - 1 }, // masters in the order given, the longest waits
		After:  clk.after,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return once its context ended")
		}
	})
	return m
}

// waitHeld waits until m holds a session with master and has learned
// the masters of its answer, want.
func waitHeld(t *testing.T, m *Member, master string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := m.Status(); s.Master == master && slices.Equal(s.Masters, want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the node holds no session with %s knowing masters %q; status %+v", master, want, m.Status())
}

// noBackoff is a clock that fails the test if the member ever backs off.
// Its waits never fire, and it has room for more than one: a member
// that backs off must not block in After while the test ends it.
func noBackoff(t *testing.T) *clock {
	clk := &clock{waits: make(chan wait, 100)}
	t.Cleanup(func() {
		select {
		case w := <-clk.waits:
			t.Errorf("the node backed off %v, want a hello at the named master at once", w.d)
		default:
		}
	})
	return clk
}

var session = rpc.Session{ID: "s1", Timeout: 30, RenewWithin: 10}

// A node configured with a standby only says hello to the active master
// the standby names, at once, learns it, and logs the change once.
func TestHelloFollowsTheNamedActiveMaster(t *testing.T) {
	active := activeMaster(t)
	sb := standby(t, active.URL)
	var log nodetest.SyncBuffer
	m := startMember(t, []string{sb.URL}, noBackoff(t), &log)
	waitHeld(t, m, active.URL, []string{sb.URL, active.URL})
	if got := sb.called(); !slices.Equal(got, []string{rpc.PathHello}) {
		t.Errorf("the standby was called %q, want one hello", got)
	}
	if got := strings.Count(log.String(), "saying hello to the one it named"); got != 1 {
		t.Errorf("the change of master is logged %d times, want once; log:\n%s", got, log.String())
	}
}

// A standby naming a standby is followed too, but masters naming each
// other are followed maxFollow times, then backed off from as any
// failure.
func TestFollowingIsBounded(t *testing.T) {
	var b *fakeMaster
	a := newFakeMaster(t, func(w http.ResponseWriter, _ string) { nodetest.WriteNotActive(w, b.URL) })
	b = standby(t, a.URL)
	clk := &clock{waits: make(chan wait)}
	var log nodetest.SyncBuffer
	startMember(t, []string{a.URL}, clk, &log)
	var w wait
	select {
	case w = <-clk.waits:
	case <-time.After(10 * time.Second):
		t.Fatal("the node never backed off from two masters naming each other")
	}
	if hellos := len(a.called()) + len(b.called()); hellos != maxFollow+1 {
		t.Errorf("%d hellos before the first back-off, want %d (the first and %d follows)", hellos, maxFollow+1, maxFollow)
	}
	if w.d != ceiling(1) {
		t.Errorf("the back-off is %v, want that of a first failure, %v", w.d, ceiling(1))
	}
	if !strings.Contains(log.String(), "masters keep naming another as active; backing off") {
		t.Errorf("the bound on following is not logged; log:\n%s", log.String())
	}
	// Only what the node says now is looked at: the next round goes on.
	w.fire <- time.Now()
	<-clk.waits
}

// A standby that names no master (an election is under way) is backed
// off from at once, as any failure, but the wait stops growing at
// electionStep's ceiling, well short of the cap.
func TestNotActiveWithoutMasterBacksOff(t *testing.T) {
	sb := standby(t, "")
	clk := &clock{waits: make(chan wait)}
	var log nodetest.SyncBuffer
	m := startMember(t, []string{sb.URL}, clk, &log)
	for i := 1; i <= electionStep+3; i++ {
		select {
		case w := <-clk.waits:
			if want := ceiling(min(i, electionStep)); w.d != want {
				t.Errorf("back-off after failure %d = %v, want %v", i, w.d, want)
			}
			if got := sb.called(); len(got) != i {
				t.Errorf("the standby was called %d times before back-off %d, want once each", len(got), i)
			}
			if i <= electionStep+2 {
				w.fire <- time.Now()
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the node never backed off from a standby naming no master (failure %d)", i)
		}
	}
	if ceiling(electionStep) >= backoffCap/4 {
		t.Errorf("electionStep's ceiling %v is not well short of the cap %v", ceiling(electionStep), backoffCap)
	}
	if got := m.Status().Masters; !slices.Equal(got, []string{sb.URL}) {
		t.Errorf("Status().Masters = %q, want the standby alone", got)
	}
	if !strings.Contains(log.String(), "an election is under way") {
		t.Errorf("the standby's answer is not logged; log:\n%s", log.String())
	}
}

// A named master of the wrong scheme is not followed: it is logged and
// backed off from.
func TestNamedMasterOfTheWrongSchemeIsNotFollowed(t *testing.T) {
	sb := standby(t, "https://127.0.0.1:1")
	clk := &clock{waits: make(chan wait)}
	var log nodetest.SyncBuffer
	m := startMember(t, []string{sb.URL}, clk, &log)
	select {
	case <-clk.waits:
	case <-time.After(10 * time.Second):
		t.Fatal("the node never backed off")
	}
	if got := m.Status().Masters; !slices.Equal(got, []string{sb.URL}) {
		t.Errorf("Status().Masters = %q, want the standby alone", got)
	}
	if !strings.Contains(log.String(), "ignoring the active master a standby named") {
		t.Errorf("the unusable URL is not logged; log:\n%s", log.String())
	}
}

// A master that steps down answers the held renewal not_active, naming
// the new active master: the node says hello there at once.
func TestRenewalNotActiveFollowsAtOnce(t *testing.T) {
	active := activeMaster(t)
	deposed := newFakeMaster(t, func(w http.ResponseWriter, path string) {
		if path == rpc.PathHello {
			body, _ := rpc.Marshal(session)
			w.Write(body)
			return
		}
		nodetest.WriteNotActive(w, active.URL)
	})
	var log nodetest.SyncBuffer
	m := startMember(t, []string{deposed.URL}, noBackoff(t), &log)
	waitHeld(t, m, active.URL, []string{deposed.URL, active.URL})
	if got := deposed.called(); !slices.Equal(got, []string{rpc.PathHello, rpc.PathRenew}) {
		t.Errorf("the deposed master was called %q, want a hello and a renewal", got)
	}
	if !strings.Contains(log.String(), "the master is no longer active; saying hello to the active master it named") {
		t.Errorf("the step-down is not logged; log:\n%s", log.String())
	}
}

// Once a standby has answered, a master that refuses the hello (the
// dead active master, which standbys name until its lease lapses) does
// not grow the back-off past electionStep's ceiling either, for
// electionWindow from the first failure; past it the back-off grows as
// after any failure: the masters are waiting for etcd.
func TestStandbysHoldTheBackoffDownForAWindow(t *testing.T) {
	sb := standby(t, "")
	var mu sync.Mutex
	now := time.Now()
	clk := &clock{waits: make(chan wait)}
	m, err := New(Config{
		Masters: []string{sb.URL, "http://" + nodetest.DeadAddr(t)},
		Node:    "node1", URL: "http://127.0.0.1:1811", BootID: "boot1", Facts: facts,
		Rand:  func(n int64) int64 { return n - 1 },
		After: clk.after,
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	next := func(i int) wait {
		t.Helper()
		select {
		case w := <-clk.waits:
			return w
		case <-time.After(10 * time.Second):
			t.Fatalf("no back-off after failure %d", i)
		}
		panic("unreachable")
	}
	const within = 2*electionStep + 2
	for i := 1; i <= within; i++ {
		w := next(i)
		if want := ceiling(min(i, electionStep)); w.d != want {
			t.Errorf("back-off after failure %d (standby and refusing master in turn) = %v, want %v", i, w.d, want)
		}
		w.fire <- time.Now()
	}
	mu.Lock()
	now = now.Add(electionWindow)
	mu.Unlock()
	if w := next(within + 1); w.d <= ceiling(electionStep) {
		t.Errorf("back-off past electionWindow = %v, want it growing past %v again", w.d, ceiling(electionStep))
	}
	if got := len(sb.called()); got < within/2 {
		t.Errorf("the standby was asked %d times in %d failures, want every other", got, within)
	}
}

// A standby that still names the dead active master (its lease has not
// lapsed) holds the back-off down too: the node follows it, is refused,
// and backs off no longer than electionStep's ceiling.
func TestStandbyNamingADeadMasterHoldsTheBackoffDown(t *testing.T) {
	dead := "http://" + nodetest.DeadAddr(t)
	sb := standby(t, dead)
	clk := &clock{waits: make(chan wait)}
	var log nodetest.SyncBuffer
	startMember(t, []string{sb.URL}, clk, &log)
	for i := 1; i <= 2*electionStep; i++ {
		select {
		case w := <-clk.waits:
			if want := ceiling(min(i, electionStep)); w.d != want {
				t.Errorf("back-off after failure %d (the named master refusing) = %v, want %v", i, w.d, want)
			}
			if i < 2*electionStep {
				w.fire <- time.Now()
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no back-off after failure %d", i)
		}
	}
	if !strings.Contains(log.String(), "connection refused") {
		t.Errorf("the dead master's refusal is not logged; log:\n%s", log.String())
	}
}

// A standby that names another master on every hello (each unreachable)
// makes the node learn at most maxLearnedMasters besides the configured
// one, the ones named last, with a warning for each forgotten.
func TestLearnedMastersBounded(t *testing.T) {
	var (
		mu    sync.Mutex
		named []string
	)
	sb := newFakeMaster(t, func(w http.ResponseWriter, _ string) {
		mu.Lock()
		u := fmt.Sprintf("http://127.0.0.1:%d", 1+len(named)) // ports nothing listens on
		named = append(named, u)
		mu.Unlock()
		nodetest.WriteNotActive(w, u)
	})
	clk := &clock{waits: make(chan wait)}
	var log nodetest.SyncBuffer
	m := startMember(t, []string{sb.URL}, clk, &log)
	const hellos = maxLearnedMasters + 4
	for len(sb.called()) < hellos {
		select {
		case w := <-clk.waits:
			if got := m.Status().Masters; len(got) > 1+maxLearnedMasters {
				t.Fatalf("the node knows %d masters, want at most %d: %q", len(got), 1+maxLearnedMasters, got)
			}
			w.fire <- time.Now()
		case <-time.After(10 * time.Second):
			t.Fatalf("the node stopped saying hello after %d hellos to the standby", len(sb.called()))
		}
	}
	// The hello that named the last one has been answered; wait for the
	// node to back off after following it.
	w := <-clk.waits
	mu.Lock()
	want := append([]string{sb.URL}, named[len(named)-maxLearnedMasters:]...)
	mu.Unlock()
	if got := m.Status().Masters; !slices.Equal(got, want) {
		t.Errorf("masters = %q, want the standby and the %d named last, %q", got, maxLearnedMasters, want)
	}
	if !strings.Contains(log.String(), "forgetting the master learned longest ago") {
		t.Errorf("forgetting a learned master is not logged; log:\n%s", log.String())
	}
	w.fire <- time.Now()
}
