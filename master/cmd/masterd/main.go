// Command masterd is the noderpc master daemon: nodes say hello to it and
// hold a session, and it knows every node and its configuration. See
// doc/membership.md and masterd --help.
package main

import (
	"os"

	"github.com/noderpc/noderpc/master/masterd"
)

func main() { os.Exit(masterd.Main()) }
