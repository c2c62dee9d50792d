package noded_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestNumbersBeyondFloat64: a number beyond a float64's range, which
// go-json takes into fn_args or a result but cannot encode again, is
// refused where it comes in: a start carrying one is a bad request, and
// a function that writes one fails with a protocol error whose record
// every later request can read. Until they were refused, the start ran
// the function and answered 500 internal, as did every wait on the call.
func TestNumbersBeyondFloat64(t *testing.T) {
	t.Parallel()
	d := startNoded(t)

	e, _ := d.requestError(t, http.MethodPut, rpc.PathStartFunction,
		`{"fn_name":"echo","timeout":5,"fn_args":{"a":[1,2,1e400]},"request_id":"big"}`, 400, rpc.KindBadRequest)
	if !strings.Contains(e.Message, "1e400 is beyond the range of a 64-bit float") {
		t.Errorf("a start with 1e400 in fn_args answered %q, want it to name the number", e.Message)
	}
	for _, c := range d.list(t).Calls {
		if c.RequestID == "big" {
			t.Errorf("the refused start ran a call: %+v", c)
		}
	}

	c := d.start(t, rpc.StartRequest{FnName: "hugenumber", Timeout: 30})
	if !c.Finished {
		c = d.finish(t, c.ID)
	}
	if c.State != rpc.StateFailed || c.Error == nil || c.Error.Kind != rpc.KindProtocolError ||
		!strings.Contains(c.Error.Message, "1e400 is beyond the range of a 64-bit float") {
		t.Fatalf("a function writing 1e400 ended %s with %+v, want failed with a protocol_error naming the number", c.State, c.Error)
	}
	if again := d.wait(t, rpc.WaitRequest{ID: c.ID, Timeout: 1}); again.State != rpc.StateFailed {
		t.Errorf("waiting again on %s answered %s, want failed", c.ID, again.State)
	}
}

// TestSubNanosecondAbortAfter: an abort_after above 0 but below a
// nanosecond bounds the call as any other does. It used to round to 0,
// which means no bound, and the call ran to its end.
func TestSubNanosecondAbortAfter(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: []byte(`{"seconds":60}`), Timeout: 30, AbortAfter: 1e-10})
	if !c.Finished {
		c = d.finish(t, c.ID)
	}
	if c.State != rpc.StateAborted {
		t.Fatalf("sleep 60 with abort_after 1e-10 ended %s (%+v), want aborted", c.State, c.Error)
	}
}
