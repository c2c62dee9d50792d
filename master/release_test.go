package master

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// queueingOptions are testOptions whose queued releases are never flushed
// by their delay within a test: only a start or Close sends them.
func queueingOptions() Options {
	opts := testOptions()
	opts.releaseDelay = time.Hour
	return opts
}

// Two calls in a row cost two requests: the first call's release rides
// on the second call's start, and the node has released it once that
// start is answered.
func TestCallsInARowReleaseOnTheNextStart(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), queueingOptions())
	ct := countRequests(c)

	first, err := c.Call(context.Background(), "echo", 1, CallOptions{})
	if err != nil {
		t.Fatalf("Call(echo 1) = %v", err)
	}
	second, err := c.Call(context.Background(), "echo", 2, CallOptions{})
	if err != nil || string(second.Result) != "2" {
		t.Fatalf("Call(echo 2) = %+v, %v; want 2", second, err)
	}

	paths := []string{rpc.PathStartFunction, rpc.PathWaitForFunction, rpc.PathReleaseFunction, rpc.PathListCalls}
	got := make([]int, len(paths))
	for i, p := range paths {
		got[i] = ct.count(p)
	}
	if !slices.Equal(got, []int{2, 0, 0, 0}) {
		t.Errorf("two Calls sent %v requests of %q, want the two starts only", got, paths)
	}
	if _, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: first.ID}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("WaitForFunction(%s), the first call, after the second start = %v; want unknown_call, released by that start", first.ID, err)
	}
	if rec, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: second.ID}); err != nil || rec.ID != second.ID {
		t.Errorf("WaitForFunction(%s), the second call = %+v, %v; want it held until a start or Close carries its release", second.ID, rec, err)
	}
	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 1, "noded_calls_retained": 1})
}

// A call that no start follows is released on its own, by a
// ReleaseFunction, once its release has waited its delay.
func TestLoneCallReleasedByTheFlush(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), testOptions())
	ct := countRequests(c)

	rec, err := c.Call(context.Background(), "echo", 1, CallOptions{})
	if err != nil {
		t.Fatalf("Call(echo 1) = %v", err)
	}

	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 1, "noded_calls_retained": 0})
	if got := ct.count(rpc.PathReleaseFunction); got != 1 {
		t.Errorf("the flush of call %s sent %d ReleaseFunction requests, want 1", rec.ID, got)
	}
}

// Close sends the releases still queued before it returns; after it, a
// call's release is sent at once, by the Call that read the result.
func TestCloseReleasesWhatIsQueued(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := newClient(t, n.Addr(), queueingOptions())
	ct := countRequests(c)

	// Calls at once on one client: each start carries what the others
	// queued before it; what is left waits for Close.
	const calls = 4
	for i, r := range CallEach(context.Background(), slices.Repeat([]*Client{c}, calls), "echo", 1, calls, CallOptions{}) {
		if r.Err != nil {
			t.Fatalf("call %d of CallEach = %v", i, r.Err)
		}
	}
	c.Close()
	list, err := c.ListCalls(context.Background())
	if err != nil || len(list) != 0 {
		t.Errorf("ListCalls once Close returned = %+v, %v; want nothing held", list, err)
	}
	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: calls})

	before := ct.count(rpc.PathReleaseFunction)
	rec, err := c.Call(context.Background(), "echo", 2, CallOptions{})
	if err != nil {
		t.Fatalf("Call(echo 2) after Close = %v", err)
	}
	if got := ct.count(rpc.PathReleaseFunction) - before; got != 1 {
		t.Errorf("Call after Close sent %d ReleaseFunction requests, want 1, at once", got)
	}
	if _, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: rec.ID}); !errors.Is(err, rpc.ErrUnknownCall) {
		t.Errorf("WaitForFunction(%s) once a Call after Close returned = %v; want unknown_call", rec.ID, err)
	}
}

// A start that fails puts the releases it carried back into the queue,
// whatever failed it; the next start carries them again.
func TestFailedStartRequeuesItsReleases(t *testing.T) {
	ids := []string{
		rpc.NewCallID(1, 2, time.Unix(1_700_000_000, 0)).String(),
		rpc.NewCallID(1, 3, time.Unix(1_700_000_000, 0)).String(),
	}
	started := rpc.Call{ID: rpc.NewCallID(1, 4, time.Unix(1_700_000_001, 0)).String(), FnName: "f", Finished: true, State: rpc.StateSucceeded}
	tests := []struct {
		name string
		fail func(t *testing.T) (answer, error)
	}{
		{"connection refused", func(*testing.T) (answer, error) { return answer{}, refused() }},
		{"busy", func(t *testing.T) (answer, error) {
			return jsonAnswer(t, http.StatusServiceUnavailable, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindBusy, "full")}), nil
		}},
		{"unknown function", func(t *testing.T) (answer, error) {
			return jsonAnswer(t, http.StatusNotFound, rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindUnknownFunction, "no f")}), nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stillFailing := true // the transport runs on this goroutine
			opts := Options{}
			opts.releaseDelay = time.Hour
			c, ft, _ := newFakeClient(t, opts, func(_ int, r request) (answer, error) {
				if stillFailing {
					return tt.fail(t)
				}
				return jsonAnswer(t, http.StatusOK, started), nil
			})
			for _, id := range ids {
				c.release(context.Background(), id)
			}

			if _, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "f"}); err == nil {
				t.Fatalf("StartFunction answered %s = nil, want its error", tt.name)
			}
			stillFailing = false
			if _, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "f"}); err != nil {
				t.Fatalf("StartFunction once the node answers = %v", err)
			}

			reqs := ft.requests()
			last := startOf(t, reqs[len(reqs)-1])
			if !slices.Equal(last.Release, ids) {
				t.Errorf("the start after the failed one carried release %q, want %q again", last.Release, ids)
			}
			for i, r := range reqs[:len(reqs)-1] {
				if got := startOf(t, r).Release; !slices.Equal(got, ids) {
					t.Errorf("attempt %d of the failed start carried release %q, want %q", i+1, got, ids)
				}
			}
			if more := c.takeReleases(rpc.MaxRelease); len(more) != 0 {
				t.Errorf("the queue after the start that carried it holds %q, want nothing", more)
			}
		})
	}
}

// startOf decodes a request the fake transport saw as a start.
func startOf(t *testing.T, r request) rpc.StartRequest {
	t.Helper()
	var req rpc.StartRequest
	if r.path != rpc.PathStartFunction {
		t.Fatalf("request %s %s, want a start", r.method, r.path)
	}
	if err := rpc.Decode(r.body, &req); err != nil {
		t.Fatalf("start %s: %v", r.body, err)
	}
	return req
}

// A start carries at most rpc.MaxRelease releases; the rest wait for the
// next one.
func TestStartCarriesAtMostMaxRelease(t *testing.T) {
	opts := Options{}
	opts.releaseDelay = time.Hour
	started := rpc.Call{ID: rpc.NewCallID(1, 2, time.Unix(1_700_000_001, 0)).String(), FnName: "f", Finished: true, State: rpc.StateSucceeded}
	c, ft, _ := newFakeClient(t, opts, func(_ int, r request) (answer, error) {
		return jsonAnswer(t, http.StatusOK, started), nil
	})
	var ids []string
	for i := range rpc.MaxRelease + 3 {
		id := rpc.NewCallID(1, i+3, time.Unix(1_700_000_000, 0)).String()
		ids = append(ids, id)
		c.release(context.Background(), id)
	}
	for range 2 {
		if _, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "f"}); err != nil {
			t.Fatal(err)
		}
	}
	reqs := ft.requests()
	if got := startOf(t, reqs[0]).Release; !slices.Equal(got, ids[:rpc.MaxRelease]) {
		t.Errorf("the first start carried %d releases, want the %d queued first", len(got), rpc.MaxRelease)
	}
	if got := startOf(t, reqs[1]).Release; !slices.Equal(got, ids[rpc.MaxRelease:]) {
		t.Errorf("the second start carried %q, want the 3 left: %q", got, ids[rpc.MaxRelease:])
	}
}

// startBeforeRelease is rpc.StartRequest as a noded older than its
// release field decoded it.
type startBeforeRelease struct {
	FnName     string          `json:"fn_name"`
	FnArgs     json.RawMessage `json:"fn_args,omitempty"`
	Timeout    float64         `json:"timeout" unit:"seconds" required:"true"`
	AbortAfter float64         `json:"abort_after,omitempty" unit:"seconds"`
	RequestID  string          `json:"request_id,omitempty"`
	LogOffset  int             `json:"log_offset,omitempty"`
	WakeOnLog  bool            `json:"wake_on_log,omitempty"`
}

// olderNode serves on loopback in front of the real noded at addr as a
// noded older than the release field: a start is decoded strictly into
// startBeforeRelease and refused as noded refuses a malformed body;
// anything else goes through to the node. It records each start body.
func olderNode(t *testing.T, addr string) (front string, starts func() []string) {
	var mu sync.Mutex
	var bodies []string
	through := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if r.URL.Path == rpc.PathStartFunction {
			mu.Lock()
			bodies = append(bodies, string(body))
			mu.Unlock()
			var e *rpc.Error
			if errors.As(rpc.Decode(body, new(startBeforeRelease)), &e) {
				b, _ := rpc.Marshal(rpc.ErrorResponse{Error: e})
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(e.Kind.HTTPStatus())
				w.Write(b)
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		through.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), bodies...)
	}
}

// A node older than the release field refuses the first start that
// carries it: the start is sent again without it and with the same
// request_id, its releases go out as ReleaseFunction requests, and the
// Client never sends the field to that node again.
func TestCallsOnANodeOlderThanRelease(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	addr, starts := olderNode(t, n.Addr())
	c := newClient(t, addr, queueingOptions())
	ct := countRequests(c)

	var ids []string
	for i := range 3 {
		rec, err := c.Call(context.Background(), "echo", i, CallOptions{})
		if err != nil || string(rec.Result) != strconv.Itoa(i) {
			t.Fatalf("Call %d (echo %d) on a node older than release = %+v, %v; want %d back", i, i, rec, err, i)
		}
		ids = append(ids, rec.ID)
	}

	got := starts()
	if len(got) != 4 {
		t.Fatalf("the node got %d starts, want 4 (the first call's, the second's refused and sent again, the third's): %q", len(got), got)
	}
	var reqs []rpc.StartRequest
	for i, body := range got {
		var req rpc.StartRequest
		if err := rpc.Decode([]byte(body), &req); err != nil {
			t.Fatalf("start %d: %s: %v", i, body, err)
		}
		if req.RequestID == "" {
			t.Errorf("start %d = %s; want a request_id", i, body)
		}
		reqs = append(reqs, req)
	}
	if !slices.Equal(reqs[1].Release, ids[:1]) || reqs[0].Release != nil || reqs[2].Release != nil || reqs[3].Release != nil {
		t.Errorf("starts %q; want release only in the second, with the first call's ID %s", got, ids[0])
	}
	if reqs[2].RequestID != reqs[1].RequestID {
		t.Errorf("the start sent again has request_id %q, want the refused one's, %q", reqs[2].RequestID, reqs[1].RequestID)
	}
	if got := ct.count(rpc.PathReleaseFunction); got != 3 {
		t.Errorf("ReleaseFunction sent %d times, want once per call", got)
	}
	if list, err := c.ListCalls(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("ListCalls after the calls = %+v, %v; want none held", list, err)
	}
}
