// Command noded-hello-fn is the function binary of noded-hello: the
// process each of its Go function calls runs in, with the same functions
// (package hello) and nothing of the daemon. Installed beside
// noded-hello, it is found by its name:
//
//	go build -o bin/ ./noded/cmd/noded-hello ./noded/cmd/noded-hello-fn
package main

import (
	"os"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded/cmd/noded-hello/hello"
)

func main() {
	reg := backend.NewRegistry()
	hello.Register(reg)
	os.Exit(backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr))
}
