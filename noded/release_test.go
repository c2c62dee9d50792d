package noded_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// A start releases the calls of its release field before it runs, as
// ReleaseFunction would: their IDs answer unknown_call from then on, and
// the node counts them released.
func TestStartReleasesFinishedCalls(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	done := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20})
	failed := d.start(t, rpc.StartRequest{FnName: "exit3", Timeout: 20})
	wantState(t, "exit3", failed, rpc.StateFailed, rpc.KindFunctionFailed)

	next := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`2`), Timeout: 20, Release: []string{done.ID, failed.ID}})

	wantState(t, "echo with release", next, rpc.StateSucceeded, "")
	if string(next.Result) != "2" {
		t.Errorf("echo 2 with release: result %s, want 2", next.Result)
	}
	for _, id := range []string{done.ID, failed.ID} {
		d.requestError(t, http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: id}, http.StatusNotFound, rpc.KindUnknownCall)
		d.requestError(t, http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: id}, http.StatusNotFound, rpc.KindUnknownCall)
	}
	if l := d.list(t); len(l.Calls) != 1 || l.Calls[0].ID != next.ID {
		t.Errorf("ListCalls after a start released two calls: %+v, want only the new call %s", l.Calls, next.ID)
	}
	d.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 2, "noded_calls_retained": 1})
}

// A start refused busy has released its calls all the same: they free
// memory whether or not the node can take another call.
func TestBusyStartStillReleases(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-running", "1")
	done := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20})
	running := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})

	d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", Timeout: 20, Release: []string{done.ID}},
		http.StatusServiceUnavailable, rpc.KindBusy)

	d.requestError(t, http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: done.ID}, http.StatusNotFound, rpc.KindUnknownCall)
	d.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 1})
	d.cancel(t, running.ID)
}

// A release the node cannot take refuses the whole start, before any of
// it is done: nothing is released and nothing runs.
func TestStartWithMalformedReleaseIsRefused(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	done := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20})
	tooMany := make([]string, rpc.MaxRelease+1)
	for i := range tooMany {
		tooMany[i] = done.ID
	}
	tests := []struct {
		name    string
		release []string
		want    string
	}{
		{"malformed ID", []string{done.ID, "1:2:3"}, `release[1]: malformed function-call ID "1:2:3"`},
		{"empty ID", []string{""}, `release[0]: malformed function-call ID ""`},
		{"too many IDs", tooMany, "release holds 257 IDs, more than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "count", Timeout: 20, Release: tt.release},
				http.StatusBadRequest, rpc.KindBadRequest)
			if !strings.Contains(e.Message, tt.want) {
				t.Errorf("start with %s: %q, want it to say %q", tt.name, e.Message, tt.want)
			}
		})
	}
	if got := d.wait(t, rpc.WaitRequest{ID: done.ID}); got.ID != done.ID || !got.Finished {
		t.Errorf("WaitForFunction %s after the refused starts = %+v, want the call, still held", done.ID, got)
	}
	if l := d.list(t); len(l.Calls) != 1 {
		t.Errorf("ListCalls after the refused starts: %+v, want only call %s: a refused start runs nothing", l.Calls, done.ID)
	}
}

// An ID the node does not hold is the release a retry repeats, or one of
// an earlier daemon: it is ignored and the start runs.
func TestStartReleasingUnknownIDsRuns(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	v := d.version(t)
	unknown := rpc.NewCallID(v.PID, 1, time.Now().Add(time.Second)).String()
	earlier := rpc.NewCallID(v.PID, 1, v.StartedAt.Add(-time.Hour)).String()
	done := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20})
	release := []string{unknown, earlier, done.ID, done.ID}

	c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`2`), Timeout: 20, Release: release})

	wantState(t, "echo releasing unknown IDs", c, rpc.StateSucceeded, "")
	d.requestError(t, http.MethodPut, rpc.PathWaitForFunction, rpc.WaitRequest{ID: done.ID}, http.StatusNotFound, rpc.KindUnknownCall)
	// The one call held counts once, however often it was named.
	d.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 1})
}

// A call still running is not released by a start that names it: its
// result would be lost while it runs. The start runs, and the node logs
// the client's mistake.
func TestStartReleasingARunningCallKeepsIt(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	running := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})

	c := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`1`), Timeout: 20, Release: []string{running.ID}})

	wantState(t, "echo releasing a running call", c, rpc.StateSucceeded, "")
	d.AwaitLogLine(t, "level=WARN", "still running", "call_id="+running.ID)
	if got := d.wait(t, rpc.WaitRequest{ID: running.ID}); got.ID != running.ID || got.State != rpc.StateRunning {
		t.Errorf("WaitForFunction %s after a start tried to release it = %+v, want the call, running", running.ID, got)
	}
	d.cancel(t, running.ID)
	d.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 0})
}
