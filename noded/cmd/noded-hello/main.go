// Command noded-hello is a noded of its own: the builtins plus one Go
// function, hello. It is the example doc/functions.md describes, built and
// called by the tests:
//
//	go build -o noded-hello ./noded/cmd/noded-hello
//	./noded-hello --insecure --listen 127.0.0.1:1812 &
//	noderpc --insecure call 127.0.0.1:1812 hello '{"name": "node1"}'
package main

import (
	"context"
	"errors"
	"os"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded"
)

// helloArgs are hello's arguments.
type helloArgs struct {
	Name string `json:"name"`
}

// hello greets its caller by name, and logs that it did.
func hello(ctx context.Context, args json.RawMessage) (any, error) {
	var a helloArgs
	if err := backend.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, errors.New(`hello needs {"name": "..."}`)
	}
	backend.Logger(ctx).Info("greeting", "name", a.Name)
	return map[string]string{"greeting": "hello, " + a.Name}, nil
}

func main() {
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	reg.Register("hello", hello)
	os.Exit(noded.Main(reg))
}
