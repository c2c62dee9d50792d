package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// printFailure prints why a node's call did not succeed, and, for a call
// that may still be running, the commands that wait for it or cancel it.
func (a *app) printFailure(r master.Result, timeout time.Duration) {
	var ab *master.AbandonedCallError
	switch {
	case errors.As(r.Err, &ab) && ab.ID == "":
		fmt.Fprintf(a.stderr, "%s: %s before the node said the call's ID; %s may be running (request_id %s): look for it with: %s\n",
			r.Node, stoppedWaiting(r.Err, timeout), ab.FnName, ab.RequestID, a.command("--json calls", r.Node))
	case errors.As(r.Err, &ab) && !ab.Cancelled && ab.State == rpc.StateRunning:
		fmt.Fprintf(a.stderr, "%s: %s; %s is still running on %s\n", r.Node, stoppedWaiting(r.Err, timeout), callName(ab.ID, ab.FnName), r.Node)
		a.printFollowUp(r.Node, ab.ID)
	case r.Call == nil && (errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded)) && !errors.As(r.Err, &ab):
		// No attempt of the start reached the node: refused, busy, or
		// never sent (a fan-out's nodes not yet begun).
		fmt.Fprintf(a.stderr, "%s: %s before the node took the call; nothing was started: %s\n",
			r.Node, stoppedWaiting(r.Err, timeout), strings.TrimPrefix(r.Err.Error(), r.Node+": "))
	case r.Call != nil && !r.Call.Finished:
		// The node stopped answering while the call ran.
		fmt.Fprintln(a.stderr, r.Err)
		a.printFollowUp(r.Node, r.Call.ID)
	default:
		fmt.Fprintln(a.stderr, r.Err)
	}
}

// stoppedWaiting says what ended the wait: --timeout, or Ctrl-C.
func stoppedWaiting(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
		return fmt.Sprintf("stopped waiting after --timeout %s", timeout)
	}
	return "interrupted"
}

// callName is "call ID (fn)", or "call ID" when fn is not known.
func callName(id, fn string) string {
	if fn == "" {
		return "call " + id
	}
	return fmt.Sprintf("call %s (%s)", id, fn)
}

// printFollowUp prints the exact commands that wait for the call id on
// node, or cancel it.
func (a *app) printFollowUp(node, id string) {
	fmt.Fprintf(a.stderr, "%s: wait for it:  %s\n", node, a.command("wait", node, id))
	fmt.Fprintf(a.stderr, "%s: cancel it:    %s\n", node, a.command("cancel", node, id))
}

// command is the noderpc command line of name (a command, after any
// global flags of its own) with args, with the global
// flags this run was given that the node needs to be reached the same
// way: --insecure, or the certificate files named on the command line
// (those found in the environment or the default directory are found
// again).
func (a *app) command(name string, args ...string) string {
	parts := append([]string{"noderpc"}, a.connFlags...)
	parts = append(parts, name)
	for _, s := range args {
		parts = append(parts, shellQuote(s))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@%+=,[]") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
