// Command noded-hello is a noded of its own: the builtins plus one Go
// function, hello. It is the example doc/functions.md describes, built and
// called by the tests:
//
//	go build -o noded-hello ./noded/cmd/noded-hello
//	./noded-hello --insecure --listen 127.0.0.1:1812 &
//	noderpc --insecure call 127.0.0.1:1812 hello '{"name": "node1"}'
//
// Built beside it, noded/cmd/noded-hello-fn is its function binary, in
// which its calls start faster.
package main

import (
	"os"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded"
	"github.com/noderpc/noderpc/noded/cmd/noded-hello/hello"
)

func main() {
	reg := backend.NewRegistry()
	hello.Register(reg)
	os.Exit(noded.Main(reg))
}
