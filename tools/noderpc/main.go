// Command noderpc calls functions on noded nodes by hand: the operator's
// and the tester's view of what a master does. Run noderpc --help, or read
// doc/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/noderpc/noderpc/tools"
)

func main() {
	// Ctrl-C ends the wait, not the function: noderpc says which call is
	// still running and how to wait for it or cancel it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first, a second Ctrl-C ends noderpc at once, even
		// while it asks the node for the call's ID (up to
		// --socket-timeout).
		<-ctx.Done()
		stop()
	}()
	code := tools.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
