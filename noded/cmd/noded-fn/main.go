// Command noded-fn is the process a call of one of noded's built-in Go
// functions runs in. noded starts it, from beside its own executable,
// once per call (or ahead of calls, for its warm pool); run by hand it
// only explains that.
//
// It links the function side of the protocol and the functions, and
// nothing of the daemon (server, TLS, metrics, configuration), so it
// starts about as fast as a minimal Go program: every call pays that
// start. Its functions must be noded's: build both from one tree
// (go build ./noded/cmd/... or go install ./noded/cmd/...). See
// doc/functions.md and doc/performance.md.
package main

import (
	"os"

	"github.com/noderpc/noderpc/backend"
)

func main() {
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	os.Exit(backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr))
}
