package jobs

import (
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestDecide checks the one judgement of a call's outcome, early (at the
// result frame, before the exit) and after the reap, for both protocols.
func TestDecide(t *testing.T) {
	code := func(n int) *int { return &n }
	exited := func(n int) *exit { return &exit{code: code(n)} }
	killed := &exit{signal: "SIGKILL"}
	tb := &Table{cfg: Config{MaxResult: 10}}
	tests := []struct {
		desc        string
		proto       Protocol
		stop        rpc.Kind
		out         output
		ended       *exit // nil: the early answer
		wantSettled bool
		wantState   rpc.State
		wantResult  string
		wantKind    rpc.Kind
		wantMsg     string
		wantCode    *int
		wantSignal  string
	}{
		{desc: "early success", proto: ProtocolFramed, out: output{data: []byte(`{"result":[1]}` + "\n")},
			wantSettled: true, wantState: rpc.StateSucceeded, wantResult: `[1]`},
		{desc: "early success of a stopped call waits for the exit", proto: ProtocolFramed, stop: rpc.KindCancelled,
			out: output{data: []byte(`{"result":1}`)}},
		{desc: "early function error waits for its exit status", proto: ProtocolFramed,
			out: output{data: []byte(`{"error":{"kind":"function_failed","message":"no"}}`)}},
		{desc: "early result over the limit waits", proto: ProtocolFramed, out: output{data: []byte(`{"result":"0123456789"}`)}},
		{desc: "early torn frame waits", proto: ProtocolFramed, out: output{data: []byte(`{"resu`)}},

		{desc: "framed success", proto: ProtocolFramed, out: output{data: []byte(`{"result":2}`)}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateSucceeded, wantResult: `2`},
		{desc: "stop wins over a late result", proto: ProtocolFramed, stop: rpc.KindCancelled,
			out: output{data: []byte(`{"result":2}`)}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateCancelled, wantKind: rpc.KindCancelled, wantMsg: "stop reason", wantCode: code(0)},
		{desc: "abort", proto: ProtocolRaw, stop: rpc.KindAborted, ended: killed,
			wantSettled: true, wantState: rpc.StateAborted, wantKind: rpc.KindAborted, wantMsg: "stop reason", wantSignal: "SIGKILL"},
		{desc: "function error carries the exit code", proto: ProtocolFramed,
			out: output{data: []byte(`{"error":{"kind":"function_failed","message":"no"}}`)}, ended: exited(1),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantMsg: "no", wantCode: code(1)},
		{desc: "framed result over the limit", proto: ProtocolFramed, out: output{data: []byte(`{"result":"0123456789"}`)}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindResultTooLarge, wantCode: code(0)},
		{desc: "stdout over the limit", proto: ProtocolRaw, out: output{tooLarge: true}, ended: killed,
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindResultTooLarge, wantSignal: "SIGKILL"},
		{desc: "bad hello", proto: ProtocolFramed, out: output{err: rpc.Errorf(rpc.KindProtocolError, "bad hello")}, ended: exited(2),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindProtocolError, wantMsg: "bad hello", wantCode: code(2)},
		{desc: "torn frame, exit 0", proto: ProtocolFramed, out: output{data: []byte(`{"resu`)}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindProtocolError, wantCode: code(0)},
		{desc: "torn frame of a killed process", proto: ProtocolFramed, out: output{data: []byte(`{"resu`)}, ended: killed,
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantMsg: "killed by SIGKILL: last words", wantSignal: "SIGKILL"},
		{desc: "result then a bad exit", proto: ProtocolFramed, out: output{data: []byte(`{"result":2}`)}, ended: exited(3),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantMsg: "status 3: last words", wantCode: code(3)},
		{desc: "raw success", proto: ProtocolRaw, out: output{data: []byte(" [1, 2]\n")}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateSucceeded, wantResult: `[1, 2]`},
		{desc: "raw garbage", proto: ProtocolRaw, out: output{data: []byte("not json")}, ended: exited(0),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindProtocolError, wantCode: code(0)},
		{desc: "raw bad exit", proto: ProtocolRaw, out: output{data: []byte("1")}, ended: exited(7),
			wantSettled: true, wantState: rpc.StateFailed, wantKind: rpc.KindFunctionFailed, wantMsg: "status 7: last words", wantCode: code(7)},
	}
	for _, tt := range tests {
		c := &call{id: "x", proc: &process{proto: protocolOf(tt.proto)}, state: rpc.StateRunning, log: logTail{max: 2}}
		c.appendLog("last words")
		c.stopKind, c.stopReason = tt.stop, "stop reason"
		v, settled := tb.decide(c, tt.out, tt.ended)
		if settled != tt.wantSettled {
			t.Errorf("%s: decide settled = %v (%+v), want %v", tt.desc, settled, v, tt.wantSettled)
			continue
		}
		if !settled {
			continue
		}
		if v.state != tt.wantState || string(v.result) != tt.wantResult {
			t.Errorf("%s: decide = %s %s %v, want %s %s", tt.desc, v.state, v.result, v.err, tt.wantState, tt.wantResult)
		}
		if tt.wantKind == "" {
			if v.err != nil {
				t.Errorf("%s: decide error = %v, want none", tt.desc, v.err)
			}
			continue
		}
		if v.err == nil || v.err.Kind != tt.wantKind || !strings.Contains(v.err.Message, tt.wantMsg) {
			t.Errorf("%s: decide error = %v, want kind %s saying %q", tt.desc, v.err, tt.wantKind, tt.wantMsg)
			continue
		}
		if (v.err.ExitCode == nil) != (tt.wantCode == nil) || v.err.ExitCode != nil && *v.err.ExitCode != *tt.wantCode || v.err.Signal != tt.wantSignal {
			t.Errorf("%s: decide error exit %v signal %q, want %v %q", tt.desc, v.err.ExitCode, v.err.Signal, tt.wantCode, tt.wantSignal)
		}
	}
}
