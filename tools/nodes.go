package tools

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// callsCommand is `noderpc calls`: the calls each node holds. It was
// `noderpc list`, which stays as its alias for scripts.
var callsCommand = &command{
	name:    "calls",
	aliases: []string{"list"},
	args:    "NODE...",
	summary: "list the calls each node holds (alias: list)",
	about: `
Lists every call each NODE holds, running or finished and not yet
released, with its state and times. noderpc list is the same command.
The functions a node offers are listed by noderpc functions.

Examples:
  noderpc --insecure calls 127.0.0.1:1811
  noderpc --insecure --json calls 10.0.0.1:1811 10.0.0.2:1811
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).calls },
}

// versionCommand is `noderpc version`: each node's release and boot id.
var versionCommand = &command{
	name:    "version",
	args:    "NODE...",
	summary: "print each node's version, protocol and boot id",
	about: `
Prints the noded release, protocol version, boot id, start time and PID of
each NODE. A boot id that changed means the node restarted and lost the
calls it was running.

Example:
  noderpc --insecure version 10.0.0.1:1811 10.0.0.2:1811
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).version },
}

// pingCommand is `noderpc ping`: does each node answer now.
var pingCommand = &command{
	name:    "ping",
	args:    "NODE...",
	summary: "check that nodes answer: round-trip time and boot id",
	about: `
Sends each NODE one request, without retry, and prints the round-trip
time and boot id, or why it did not answer (within --socket-timeout).

Example:
  noderpc --insecure ping 10.0.0.1:1811 10.0.0.2:1811
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).ping },
}

// eachNode runs do for every node at once, for the commands that take
// several nodes, and returns the clients in order; ok is false after a
// usage error has been reported.
func (a *app) eachNode(args []string, opts master.Options, do func(i int, c *master.Client)) (clients []*master.Client, status int, ok bool) {
	if err := checkNodes(args); err != nil {
		return nil, a.commandUsageError("%v", err), false
	}
	clients, err := a.clients(args, opts)
	if err != nil {
		return nil, a.commandUsageError("%v", err), false
	}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() { do(i, cl) })
	}
	wg.Wait()
	return clients, ExitOK, true
}

func (a *app) calls(ctx context.Context, args []string) int {
	type callsOutput struct {
		header
		Calls []rpc.CallSummary `json:"calls"`
	}
	return listEach(ctx, a, args, (*master.Client).ListCalls,
		"NODE\tID\tFUNCTION\tSTATE\tSTARTED\tFINISHED\tERROR",
		func(h header, calls []rpc.CallSummary) any { return callsOutput{h, calls} },
		func(node string, s rpc.CallSummary) string {
			finished := "-"
			if s.FinishedAt != nil {
				finished = s.FinishedAt.Local().Format(time.DateTime)
			}
			kind := "-"
			if s.ErrorKind != "" {
				kind = string(s.ErrorKind)
			}
			return strings.Join([]string{node, s.ID, s.FnName, string(s.State),
				s.StartedAt.Local().Format(time.DateTime), finished, kind}, "\t")
		})
}

// listEach asks every node at once for its list (fetch) and prints the
// answers: with --json one object per node (wrap makes it from the
// node's header and its list, never null for a node that answered);
// otherwise one table under heading, a row per item, and each node's
// error on stderr. The status is the worst of the nodes'.
func listEach[T any](ctx context.Context, a *app, args []string, fetch func(*master.Client, context.Context) ([]T, error),
	heading string, wrap func(header, []T) any, row func(node string, item T) string) int {
	lists := make([][]T, len(args))
	errs := make([]error, len(args))
	clients, status, ok := a.eachNode(args, a.options(), func(i int, c *master.Client) {
		lists[i], errs[i] = fetch(c, ctx)
	})
	if !ok {
		return status
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if !a.json && anyAnswered(errs) {
		fmt.Fprintln(tw, heading)
	}
	for i, c := range clients {
		status = worst(status, statusOf(errs[i]))
		switch {
		case a.json:
			list := lists[i]
			if errs[i] == nil && list == nil {
				list = []T{}
			}
			a.emitJSON(wrap(newHeader(c.Node(), errs[i]), list))
		case errs[i] != nil:
			fmt.Fprintln(a.stderr, errs[i])
		default:
			for _, item := range lists[i] {
				fmt.Fprintln(tw, row(c.Node(), item))
			}
		}
	}
	tw.Flush()
	return status
}

func (a *app) version(ctx context.Context, args []string) int {
	vs := make([]*rpc.VersionResponse, len(args))
	errs := make([]error, len(args))
	clients, status, ok := a.eachNode(args, a.options(), func(i int, c *master.Client) {
		vs[i], errs[i] = c.Version(ctx)
	})
	if !ok {
		return status
	}
	type versionOutput struct {
		header
		Version *rpc.VersionResponse `json:"version,omitempty"`
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if !a.json && anyAnswered(errs) {
		fmt.Fprintln(tw, "NODE\tVERSION\tPROTOCOL\tBOOT ID\tSTARTED\tPID")
	}
	for i, c := range clients {
		status = worst(status, statusOf(errs[i]))
		switch {
		case a.json:
			a.emitJSON(versionOutput{header: newHeader(c.Node(), errs[i]), Version: vs[i]})
		case errs[i] != nil:
			fmt.Fprintln(a.stderr, errs[i])
		default:
			v := vs[i]
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", c.Node(), v.Version, v.Protocol, v.BootID, v.StartedAt.Local().Format(time.DateTime), v.PID)
		}
	}
	tw.Flush()
	return status
}

func (a *app) ping(ctx context.Context, args []string) int {
	// One probe, no retry: ping asks whether a node answers now.
	opts := a.options()
	opts.Retry.Version = master.Policy{MaxAttempts: 1, MaxElapsed: a.socketTimeout}
	vs := make([]*rpc.VersionResponse, len(args))
	rtts := make([]time.Duration, len(args))
	errs := make([]error, len(args))
	clients, status, ok := a.eachNode(args, opts, func(i int, c *master.Client) {
		start := time.Now()
		vs[i], errs[i] = c.Version(ctx)
		rtts[i] = time.Since(start)
	})
	if !ok {
		return status
	}
	type pingOutput struct {
		header
		RTTSeconds float64 `json:"rtt_seconds,omitempty"`
		BootID     string  `json:"boot_id,omitempty"`
	}
	for i, c := range clients {
		status = worst(status, statusOf(errs[i]))
		switch {
		case a.json:
			o := pingOutput{header: newHeader(c.Node(), errs[i])}
			if errs[i] == nil {
				o.RTTSeconds, o.BootID = rtts[i].Seconds(), vs[i].BootID
			}
			a.emitJSON(o)
		case errs[i] != nil:
			fmt.Fprintln(a.stderr, errs[i])
		default:
			fmt.Fprintf(a.stdout, "%s: answered in %s, boot id %s, up %s\n", c.Node(), rtts[i].Round(10*time.Microsecond), vs[i].BootID,
				time.Since(vs[i].StartedAt).Round(time.Second))
		}
	}
	return status
}

// anyAnswered reports whether any node answered, so that a table has a
// header only when it has rows to head.
func anyAnswered(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return true
		}
	}
	return false
}
