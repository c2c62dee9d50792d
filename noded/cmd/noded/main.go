// Command noded is the noderpc node daemon with the built-in functions.
// See doc/protocol.md and noded --help.
package main

import (
	"os"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded"
)

func main() {
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	os.Exit(noded.Main(reg))
}
