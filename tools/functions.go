package tools

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// functionsCommand is `noderpc functions`: the functions each node offers.
var functionsCommand = &command{
	name:    "functions",
	args:    "NODE...",
	summary: "list the functions each node offers, and files that cannot run",
	about: `
Lists the functions each NODE offers: its built-in and Go functions, and
every file of its functions directory. A file that a start would refuse
or fail to execute (not executable, writable by others, no #! line, a
#! line ending in CRLF, ...) is listed as not runnable, with why. The
exit status is 0 whenever every node answered, runnable or not.

Examples:
  noderpc --insecure functions 127.0.0.1:1811
  noderpc --insecure --json functions 10.0.0.1:1811 10.0.0.2:1811
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).functions },
}

func (a *app) functions(ctx context.Context, args []string) int {
	lists := make([][]rpc.Function, len(args))
	errs := make([]error, len(args))
	clients, status, ok := a.eachNode(args, a.options(), func(i int, c *master.Client) {
		lists[i], errs[i] = c.ListFunctions(ctx)
	})
	if !ok {
		return status
	}
	type functionsOutput struct {
		header
		Functions []rpc.Function `json:"functions"`
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if !a.json && anyAnswered(errs) {
		fmt.Fprintln(tw, "NODE\tFUNCTION\tKIND\tRUNNABLE\tPROBLEM")
	}
	for i, c := range clients {
		status = worst(status, statusOf(errs[i]))
		switch {
		case a.json:
			fns := lists[i]
			if errs[i] == nil && fns == nil {
				fns = []rpc.Function{}
			}
			a.emitJSON(functionsOutput{header: newHeader(c.Node(), errs[i]), Functions: fns})
		case errs[i] != nil:
			fmt.Fprintln(a.stderr, errs[i])
		default:
			for _, f := range lists[i] {
				runnable, problem := "yes", "-"
				if !f.Runnable {
					runnable, problem = "no", f.Problem
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Node(), f.Name, f.Kind, runnable, problem)
			}
		}
	}
	tw.Flush()
	return status
}
