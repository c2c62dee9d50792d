package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// fakeCalls is a node whose every call of any function succeeds at once
// with result and log, once gate is closed (nil: at once).
func fakeCalls(t *testing.T, gate <-chan struct{}, result string, log []string) nodetest.Answer {
	rec, err := json.Marshal(rpc.Call{
		ID: rpc.NewCallID(1, 2, time.Now()).String(), FnName: "echo", Finished: true, State: rpc.StateSucceeded,
		Result: json.RawMessage(result), Log: log, LogOffset: len(log), StartedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	return func(conn net.Conn, req *http.Request) bool {
		if req.URL.Path == rpc.PathStartFunction && gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return false
			}
		}
		return nodetest.AnswerJSON(http.StatusOK, string(rec))(conn, req)
	}
}

func TestCallEachStreamDeliversEachResultAsItLands(t *testing.T) {
	gate := make(chan struct{})
	held := nodetest.StartFake(t, fakeCalls(t, gate, `"held"`, []string{"h1"}))
	fast := nodetest.StartFake(t, fakeCalls(t, nil, `"fast"`, []string{"f1", "f2"}))
	var clients []*Client
	for _, addr := range []string{held.Addr, fast.Addr, "127.0.0.1:1"} {
		clients = append(clients, edgeClient(t, addr, 0))
	}
	clients[2].SetOffline(true)

	// OnLog and deliver append to events without a lock: the race
	// detector fails the test if they are ever called at once.
	var events []string
	results := map[int]Result{}
	fastDelivered, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		onLog := func(l LogLine) { events = append(events, "log "+l.Text) }
		CallEachStream(context.Background(), clients, "echo", nil, 0, CallOptions{OnLog: onLog}, func(i int, r Result) {
			if _, again := results[i]; again {
				t.Errorf("node %d delivered twice", i)
			}
			results[i] = r
			events = append(events, fmt.Sprint("deliver ", i))
			if i == 1 {
				close(fastDelivered)
			}
		})
	}()
	select {
	case <-fastDelivered:
	case <-time.After(10 * time.Second):
		t.Fatal("the fast node's result was not delivered while the first node held its answer")
	}
	close(gate)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("CallEachStream did not return after every node answered")
	}

	before := func(a, b string) bool {
		i, j := slices.Index(events, a), slices.Index(events, b)
		return i >= 0 && j >= 0 && i < j
	}
	for _, order := range [][2]string{
		{"deliver 1", "deliver 0"},                                             // as they landed, not in the order of clients
		{"log f1", "log f2"}, {"log f2", "deliver 1"}, {"log h1", "deliver 0"}, // a node's log before its result
	} {
		if !before(order[0], order[1]) {
			t.Errorf("events %q: want %q before %q", events, order[0], order[1])
		}
	}
	for i, want := range []string{`"held"`, `"fast"`} {
		if r := results[i]; r.Err != nil || r.Call == nil || string(r.Call.Result) != want || r.Node != clients[i].Node() {
			t.Errorf("result of node %d = %+v, want %s from %s", i, r, want, clients[i].Node())
		}
	}
	if r := results[2]; !errors.Is(r.Err, ErrOffline) {
		t.Errorf("result of the offline node = %+v, want ErrOffline", r)
	}
}

func TestCallEachKeepsTheOrderOfClients(t *testing.T) {
	// The first node answers only once the second has finished its call.
	gate := make(chan struct{})
	held := nodetest.StartFake(t, fakeCalls(t, gate, `"held"`, nil))
	fastCalls := fakeCalls(t, nil, `"fast"`, nil)
	var once sync.Once
	fast := nodetest.StartFake(t, func(conn net.Conn, req *http.Request) bool {
		ok := fastCalls(conn, req)
		if req.URL.Path == rpc.PathReleaseFunction {
			once.Do(func() { close(gate) })
		}
		return ok
	})
	clients := []*Client{edgeClient(t, held.Addr, 0), edgeClient(t, fast.Addr, 0)}

	got := CallEach(context.Background(), clients, "echo", nil, 0, CallOptions{})

	if len(got) != 2 || got[0].Node != held.Addr || got[1].Node != fast.Addr ||
		string(got[0].Call.Result) != `"held"` || string(got[1].Call.Result) != `"fast"` {
		t.Errorf("CallEach = %+v, want the held node's result first, as in clients", got)
	}
}

// A deliver that panics must not leave the fan-out's workers blocked on
// a Result no one will take: the panic reaches the caller and every
// goroutine of the fan-out ends.
func TestCallEachStreamPanickingDeliverLeaksNothing(t *testing.T) {
	var clients []*Client
	for range 8 {
		clients = append(clients, edgeClient(t, nodetest.StartFake(t, fakeCalls(t, nil, `"ok"`, []string{"line"})).Addr, 0))
	}
	onLog := func(LogLine) {}
	func() {
		defer func() {
			if r := recover(); r != "deliver failed" {
				t.Errorf("recovered %v, want deliver's panic", r)
			}
		}()
		CallEachStream(t.Context(), clients, "echo", nil, 4, CallOptions{OnLog: onLog}, func(int, Result) { panic("deliver failed") })
	}()
	// The fan-out's goroutines are the ones CallEachStream started.
	fanout := func() (string, bool) {
		buf := make([]byte, 1<<20)
		all := string(buf[:runtime.Stack(buf, true)])
		return all, strings.Contains(all, "master.CallEachStream.func")
	}
	deadline := time.Now().Add(10 * time.Second)
	for stacks, left := fanout(); left; stacks, left = fanout() {
		if time.Now().After(deadline) {
			t.Fatalf("the fan-out's goroutines are left after the panic:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
