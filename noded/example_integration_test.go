package noded_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestOwnNoded builds the example of a noded with its own function
// (noded/cmd/noded-hello), runs it, and calls its function and a builtin
// through the client, as doc/functions.md says a program does.
func TestOwnNoded(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nodetest.Options{Binary: nodetest.Binary(t, "github.com/noderpc/noderpc/noded/cmd/noded-hello")})
	c, err := master.New(n.Addr(), master.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	var lines []string
	rec, err := c.Call(context.Background(), "hello", map[string]string{"name": "node1"},
		master.CallOptions{OnLog: func(l master.LogLine) { lines = append(lines, l.Text) }})
	if err != nil {
		t.Fatalf("Call(hello) = %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(rec.Result, &got); err != nil || got["greeting"] != "hello, node1" {
		t.Errorf("hello result = %s (%v), want greeting hello, node1", rec.Result, err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "greeting") || !strings.Contains(lines[0], "call_id="+rec.ID) {
		t.Errorf("hello log = %q, want one greeting line with call_id=%s", lines, rec.ID)
	}

	_, err = c.Call(context.Background(), "hello", map[string]string{}, master.CallOptions{})
	var ce *master.CallError
	if !errors.As(err, &ce) || !errors.Is(err, rpc.ErrFunctionFailed) || !strings.Contains(err.Error(), "needs") {
		t.Errorf("Call(hello without a name) = %v, want a function_failed CallError saying what it needs", err)
	}
	if rec, err := c.Call(context.Background(), "echo", 7, master.CallOptions{}); err != nil || string(rec.Result) != "7" {
		t.Errorf("Call(echo 7) on the example noded = %v %v, want the builtin's 7", rec, err)
	}
}
