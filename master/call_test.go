package master

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

func TestCallNumbersLogLinesAcrossDroppedOnes(t *testing.T) {
	const id = "1:2:1700000000.000000:00000000000000ff"
	opts := Options{}
	opts.releaseDelay = time.Hour // sent by FlushReleases below
	c, ft, _ := newFakeClient(t, opts, func(n int, r request) (answer, error) {
		switch r.path {
		case rpc.PathStartFunction:
			return jsonAnswer(t, http.StatusOK, rpc.Call{ID: id, FnName: "f", State: rpc.StateRunning, Log: []string{"a"}, LogOffset: 1}), nil
		case rpc.PathWaitForFunction:
			// Lines 1 to 3 fell out of the node's bounded tail.
			return jsonAnswer(t, http.StatusOK, rpc.Call{ID: id, FnName: "f", Finished: true, State: rpc.StateFailed,
				Error: rpc.Errorf(rpc.KindFunctionFailed, "boom"), Log: []string{"z"}, LogOffset: 5, LogDropped: 3}), nil
		case rpc.PathReleaseFunction:
			return answer{status: http.StatusOK, body: []byte(`{}`)}, nil
		}
		t.Errorf("unexpected request %s", r.path)
		return answer{}, errors.New("unexpected")
	})
	var got []LogLine
	_, err := c.Call(context.Background(), "f", nil, CallOptions{OnLog: func(l LogLine) { got = append(got, l) }})

	var ce *CallError
	if !errors.As(err, &ce) || !errors.Is(err, rpc.ErrFunctionFailed) || len(ce.Log) != 2 {
		t.Fatalf("Call = %v, want a function_failed *CallError with the two lines seen", err)
	}
	if len(got) != 2 || got[0].N != 0 || got[0].Text != "a" || got[1].N != 4 || got[1].Text != "z" {
		t.Errorf("log lines = %+v, want a numbered 0 and z numbered 4", got)
	}
	// The release waits in the queue for a start; a flush sends it.
	if err := c.FlushReleases(context.Background()); err != nil {
		t.Fatalf("FlushReleases after the call: %v", err)
	}
	var paths []string
	for _, r := range ft.requests() {
		paths = append(paths, r.path)
	}
	if want := []string{rpc.PathStartFunction, rpc.PathWaitForFunction, rpc.PathReleaseFunction}; len(paths) != 3 || paths[2] != want[2] {
		t.Errorf("requests %v, want %v: a finished call is released once read", paths, want)
	}
}
