package master

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestListFunctionsAndCalls: against a real noded, ListFunctions lists
// its functions, a script of its directory among them, and ListCalls
// the call started.
func TestListFunctionsAndCalls(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{"greet": `echo '"hi"'`}})
	c := edgeClient(t, n.Addr(), DefaultMaxAnswer)
	ctx := context.Background()
	rec, err := c.StartFunction(ctx, rpc.StartRequest{FnName: "greet", Timeout: 5})
	if err != nil || rec.State != rpc.StateSucceeded {
		t.Fatalf("StartFunction(greet) = %+v, %v; want it succeeded", rec, err)
	}
	fns, err := c.ListFunctions(ctx)
	kinds := make(map[string]rpc.FunctionKind)
	for _, f := range fns {
		kinds[f.Name] = f.Kind
	}
	if err != nil || kinds["greet"] != rpc.FunctionExecutable || kinds["echo"] != rpc.FunctionBuiltin {
		t.Errorf("ListFunctions = %+v, %v; want greet executable and echo builtin", fns, err)
	}
	calls, err := c.ListCalls(ctx)
	if err != nil || len(calls) != 1 || calls[0].ID != rec.ID {
		t.Errorf("ListCalls = %+v, %v; want the call %s", calls, err, rec.ID)
	}
}

// TestListFunctionsOfProtocol1Node: a node of protocol 1 answers GET
// /ListFunctions with its calls. The client fails with a protocol error
// that says so, at once, rather than return no functions.
func TestListFunctionsOfProtocol1Node(t *testing.T) {
	old := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"calls":[{"id":"1:2:3.000000:0000000000000000","fn_name":"echo","state":"running","started_at":"2026-01-02T03:04:05Z"}]}`))
	c := edgeClient(t, old.Addr, DefaultMaxAnswer)
	fns, err := c.ListFunctions(context.Background())
	if !errors.Is(err, rpc.ErrProtocolError) || !strings.Contains(err.Error(), "protocol 1") || fns != nil {
		t.Errorf("ListFunctions of a node of protocol 1 = %+v, %v; want a protocol_error naming protocol 1", fns, err)
	}
	if got := old.Requests.Load(); got != 1 {
		t.Errorf("ListFunctions sent %d requests to a node of protocol 1, want 1: a wrong answer is not retried", got)
	}
}
