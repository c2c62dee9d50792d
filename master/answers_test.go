package master

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// A 2xx answer that is not a record (empty, null, an object with no call
// ID: anything else listening on a node's port) is a protocol error. It
// used to be a zero record, whose empty call ID Call then waited on for
// ever, as fast as the network allowed.
func TestAnswerThatIsNoRecord(t *testing.T) {
	for _, body := range []string{"", "  ", "null", "[]", "{}", `{"state":"running"}`,
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"sleeping"}`,
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"running","finished":true}`,
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"succeeded","finished":false}`,
		// Kinds no call ends with: a caller would take them for a
		// request refused, and the call for one that never ran.
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"failed","finished":true,"error":{"kind":"busy","message":"x"}}`,
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"failed","finished":true,"error":{"kind":"unreachable","message":"x"}}`,
		`{"id":"1:2:1700000000.000001:0123456789abcdef","state":"failed","finished":true,"error":{"kind":"invented","message":"x"}}`,
	} {
		c, ft, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) {
			return answer{status: http.StatusOK, body: []byte(body)}, nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Call(ctx, "echo", nil, CallOptions{})
		cancel()
		if !errors.Is(err, rpc.ErrProtocolError) {
			t.Errorf("Call against a node answering 200 %q = %v, want protocol_error", body, err)
		}
		if n := len(ft.requests()); n != 1 {
			t.Errorf("Call against a node answering 200 %q sent %d requests, want 1", body, n)
		}
	}
	failed := `{"id":"1:2:1700000000.000001:0123456789abcdef","state":"failed","finished":true,"error":{"kind":"result_too_large","message":"x"}}`
	c, _, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) {
		return answer{status: http.StatusOK, body: []byte(failed)}, nil
	})
	if _, err := c.Call(context.Background(), "echo", nil, CallOptions{}); !errors.Is(err, rpc.ErrResultTooLarge) {
		t.Errorf("Call against a node answering %s = %v, want result_too_large", failed, err)
	}
	c, _, _ = newFakeClient(t, Options{}, func(int, request) (answer, error) {
		return answer{status: http.StatusOK}, nil
	})
	if _, err := c.Version(context.Background()); !errors.Is(err, rpc.ErrProtocolError) {
		t.Errorf("Version answered 200 with no body = %v, want protocol_error", err)
	}
}

// A node that answers every wait at once, the call still running and
// nothing new, is asked again only after a pause that doubles from
// firstPause up to maxPause: it used to be asked again at once, about
// 30,000 times a second.
func TestEarlyWaitRoundsArePaced(t *testing.T) {
	const rounds = 12
	running := rpc.Call{ID: "1:2:1700000000.000001:0123456789abcdef", FnName: "sleep", State: rpc.StateRunning}
	c, ft, clk := newFakeClient(t, Options{}, func(n int, r request) (answer, error) {
		if n > rounds {
			done := running
			done.State, done.Finished = rpc.StateSucceeded, true
			return jsonAnswer(t, http.StatusOK, done), nil
		}
		return jsonAnswer(t, http.StatusOK, running), nil
	})
	start := clk.Now()
	if _, err := c.Call(context.Background(), "sleep", nil, CallOptions{Keep: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(ft.requests()); n != rounds+1 {
		t.Fatalf("Call sent %d requests, want %d", n, rounds+1)
	}
	// rounds-1 early waits (the start's answer is no wait), each
	// followed by a pause.
	var want time.Duration
	for i, p := 0, firstPause; i < rounds-1; i, p = i+1, min(2*p, maxPause) {
		want += p
	}
	if got := clk.Now().Sub(start); got != want {
		t.Errorf("%d early rounds paused %v in all (%v), want %v", rounds-1, got, clk.sleeps, want)
	}
}
