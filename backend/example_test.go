package backend_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/goccy/go-json"
	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/rpc"
)

// hello is a Go function: it decodes its arguments strictly, logs, and
// returns a value that becomes the call's JSON result.
func hello(ctx context.Context, args json.RawMessage) (any, error) {
	var a struct {
		Name string `json:"name"`
	}
	if err := backend.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, fmt.Errorf(`hello needs {"name": "..."}`)
	}
	backend.Logger(ctx).Info("greeting", "name", a.Name)
	return map[string]string{"greeting": "hello, " + a.Name}, nil
}

func ExampleRegistry_Register() {
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	reg.Register("hello", hello)
	fmt.Println(reg.Names())

	// noded runs the function in a child process; here it is called
	// directly, as a unit test of the function would.
	fn, _ := reg.Lookup("hello")
	v, err := fn(context.Background(), json.RawMessage(`{"name": "node1"}`))
	fmt.Println(v, err)
	_, err = fn(context.Background(), json.RawMessage(`{"nmae": "node1"}`))
	fmt.Println(err)
	// Output:
	// [echo hello node_info sleep version]
	// map[greeting:hello, node1] <nil>
	// bad fn_args: unknown field "nmae" (at byte 1)
}

// ExampleServeFunction plays noded's part of the stdio protocol against a
// function process served in-process over pipes.
func ExampleServeFunction() {
	reg := backend.NewRegistry()
	reg.Register("hello", hello)

	// noded sets the cookie in the environment of the processes it starts.
	os.Setenv(rpc.FunctionCookieKey, rpc.FunctionCookieValue)
	defer os.Unsetenv(rpc.FunctionCookieKey)

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- backend.ServeFunction(reg, stdinR, stdoutW, io.Discard)
		stdoutW.Close()
	}()

	// 1. The process greets first.
	out := bufio.NewReader(stdoutR)
	line, _ := out.ReadBytes('\n')
	h, err := rpc.DecodeHello(line)
	fmt.Println("hello: protocol", h.Protocol, err)

	// 2. noded writes the request and closes stdin.
	req, _ := json.Marshal(rpc.FunctionRequest{
		CallID: "100:200:1700000000.000000:0123456789abcdef",
		FnName: "hello",
		FnArgs: json.RawMessage(`{"name": "world"}`),
	})
	stdinW.Write(req)
	stdinW.Close()

	// 3. The process answers with one result frame and exits 0.
	rest, _ := io.ReadAll(out)
	fmt.Printf("result frame: %s", rest)
	fmt.Println("exit code:", <-exit)
	// Output:
	// hello: protocol 2 <nil>
	// result frame: {"result":{"greeting":"hello, world"}}
	// exit code: 0
}
