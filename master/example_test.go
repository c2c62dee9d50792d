package master_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// exampleNode starts a noded on a free loopback port for an example and
// returns its address; nodetest.Run stops it once the tests are done.
// Besides the builtins it has "countdown", an executable function that
// logs 3, 2, 1 a fifth of a second apart and returns "liftoff".
func exampleNode() string {
	n, err := nodetest.Launch(nodetest.Options{Functions: map[string]string{
		"countdown": `for i in 3 2 1; do echo $i >&2; sleep 0.2; done; echo '"liftoff"'`,
	}})
	if err != nil {
		panic(err)
	}
	return n.Addr()
}

// deadNode returns a loopback address nothing listens on.
func deadNode() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// One call: run echo on a node and read its result.
func ExampleClient_Call() {
	addr := exampleNode() // "127.0.0.1:1811" on a real cluster

	c, err := master.New(addr, master.Options{Insecure: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, err := c.Call(context.Background(), "echo", map[string]string{"greeting": "hello"}, master.CallOptions{})
	var ce *master.CallError
	switch {
	case errors.As(err, &ce):
		fmt.Println("the function failed:", ce.Err, ce.Log)
	case errors.Is(err, rpc.ErrUnreachable):
		fmt.Println("the node did not answer:", err)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(string(rec.Result))
	}
	// Output: {"greeting":"hello"}
}

// A fan-out: one function on many nodes, one result per node, a dead node
// failing only its own result.
func ExampleCallEach() {
	addrs := []string{exampleNode(), exampleNode(), deadNode(), exampleNode()}

	// Short retries, so that the dead node is given up on in a second.
	quick := master.Policy{MaxAttempts: 3, MaxElapsed: time.Second}
	opts := master.Options{Insecure: true, Timeout: time.Second, Retry: master.RetryPolicies{Start: quick, Wait: quick}}
	var clients []*master.Client
	for _, addr := range addrs {
		c, err := master.New(addr, opts)
		if err != nil {
			fmt.Println(err)
			return
		}
		clients = append(clients, c)
	}

	results := master.CallEach(context.Background(), clients, "echo", map[string]string{"hello": "cluster"}, 16, master.CallOptions{})
	for i, r := range results {
		if r.Err != nil {
			fmt.Printf("node %d: %s\n", i, rpc.KindOf(r.Err))
			continue
		}
		fmt.Printf("node %d: %s\n", i, r.Call.Result)
	}
	// Output:
	// node 0: {"hello":"cluster"}
	// node 1: {"hello":"cluster"}
	// node 2: unreachable
	// node 3: {"hello":"cluster"}
}

// A long call whose log lines are shown as the function writes them.
func ExampleClient_Call_logStreaming() {
	addr := exampleNode()

	c, err := master.New(addr, master.Options{Insecure: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, err := c.Call(context.Background(), "countdown", nil, master.CallOptions{
		OnLog: func(l master.LogLine) { fmt.Printf("line %d: %s\n", l.N, l.Text) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("result:", string(rec.Result))
	// Output:
	// line 0: 3
	// line 1: 2
	// line 2: 1
	// result: "liftoff"
}
