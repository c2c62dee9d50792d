package tools

import (
	"context"
	"flag"
	"strings"

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
	type functionsOutput struct {
		header
		Functions []rpc.Function `json:"functions"`
	}
	return listEach(ctx, a, args, (*master.Client).ListFunctions,
		"NODE\tFUNCTION\tKIND\tRUNNABLE\tPROBLEM",
		func(h header, fns []rpc.Function) any { return functionsOutput{h, fns} },
		func(node string, f rpc.Function) string {
			runnable, problem := "yes", "-"
			if !f.Runnable {
				runnable, problem = "no", f.Problem
			}
			return strings.Join([]string{node, f.Name, string(f.Kind), runnable, problem}, "\t")
		})
}
