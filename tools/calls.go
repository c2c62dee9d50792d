package tools

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// callCommand is `noderpc call`: start a function on nodes and wait for
// its result.
var callCommand = &command{
	name:    "call",
	args:    "NODE... FN [ARGS_JSON|-] | --all FN [ARGS_JSON|-]",
	summary: "run a function on one or more nodes, or on every up node, and print its result",
	about: `
Starts FN with the JSON arguments ARGS_JSON ("-" reads them from stdin) on
every NODE at once, waits for it in rounds, prints the result, and
releases the call on the node. With several nodes it prints one line per
node, "NODE: RESULT", errors on stderr, each as soon as that node is done;
--ordered prints them in the order of the nodes given instead. On a
terminal it shows the elapsed time and the function's log lines while it
waits; otherwise the log lines go to stderr as they arrive (with --json,
into the output).

--all runs FN on every node masterd (--master) lists up, called directly
at the URL each advertised, exactly as if they were given as NODEs: a node
listed up that does not answer is reported unreachable like any other.

--timeout, or Ctrl-C, ends the wait, not the function, even during the
start: noderpc then says which call is still running on which node, and
prints the commands that wait for it or cancel it.

Examples:
  noderpc --insecure call 127.0.0.1:1811 echo '{"hello": "node"}'
  noderpc --insecure call --timeout 1m 127.0.0.1:1811 sleep '{"seconds": 5}'
  noderpc --insecure call 10.0.0.1:1811 10.0.0.2:1811 10.0.0.3:1811 node_info
  noderpc --insecure call --ordered 10.0.0.1:1811 10.0.0.2:1811 node_info > by-node.txt
  echo '{"paths": ["/"]}' | noderpc --insecure --json call 127.0.0.1:1811 node_info -
  noderpc --master https://master1:1812 call --all node_info
`,
	setup: func(fs *flag.FlagSet) runFunc {
		timeout := fs.Duration("timeout", 0, "stop waiting after this long (0: wait until the function ends)")
		abortAfter := fs.Duration("abort-after", 0, "have the node kill the function once it has run this long (0: never)")
		concurrency := fs.Int("concurrency", master.DefaultConcurrency, "most nodes called at once")
		ordered := fs.Bool("ordered", false, "print the nodes' results in the order the nodes are given, not as each node is done")
		all := fs.Bool("all", false, "run on every node masterd (--master) lists up, instead of NODEs")
		return func(a *app, ctx context.Context, args []string) int {
			return a.call(ctx, args, callFlags{timeout: *timeout, abortAfter: *abortAfter, concurrency: *concurrency, ordered: *ordered, all: *all})
		}
	},
}

// startCommand is `noderpc start`: start a function and leave it
// running.
var startCommand = &command{
	name:    "start",
	args:    "NODE FN [ARGS_JSON|-]",
	summary: "start a function and print its call ID",
	about: `
Starts FN on NODE and prints the function-call ID, to give to wait, cancel
or release. The node waits up to --timeout (at most half of
--socket-timeout) for the function to end before answering; the default 0
answers at once (fire-and-forget). The call is not released: wait for it,
or release it.

Examples:
  noderpc --insecure start 127.0.0.1:1811 sleep '{"seconds": 600}'
  id=$(noderpc --insecure start 127.0.0.1:1811 node_info) && noderpc --insecure wait 127.0.0.1:1811 "$id"
  noderpc --insecure start --request-id deploy-42 127.0.0.1:1811 echo '"once"'
`,
	setup: func(fs *flag.FlagSet) runFunc {
		timeout := fs.Duration("timeout", 0, "how long the node waits for the function before answering (0: at once)")
		abortAfter := fs.Duration("abort-after", 0, "have the node kill the function once it has run this long (0: never)")
		requestID := fs.String("request-id", "", "make the start idempotent: a repeated start with the same ID returns the first call (default: a fresh UUID)")
		return func(a *app, ctx context.Context, args []string) int {
			return a.start(ctx, args, *timeout, *abortAfter, *requestID)
		}
	},
}

// waitCommand is `noderpc wait`: wait for a started call.
var waitCommand = &command{
	name:    "wait",
	args:    "NODE ID",
	summary: "wait for a started call and print its result",
	about: `
Waits for the call ID on NODE to end, in rounds, showing its log from the
first line, prints its result like call, and releases it unless --keep.

Examples:
  noderpc --insecure wait 127.0.0.1:1811 4711:4712:1732200000.123456:9f86d081884c7d65
  noderpc --insecure wait --timeout 30s --keep 127.0.0.1:1811 4711:4712:1732200000.123456:9f86d081884c7d65
`,
	setup: func(fs *flag.FlagSet) runFunc {
		timeout := fs.Duration("timeout", 0, "stop waiting after this long (0: wait until the function ends)")
		keep := fs.Bool("keep", false, "leave the finished call on the node instead of releasing it")
		return func(a *app, ctx context.Context, args []string) int {
			return a.wait(ctx, args, *timeout, *keep)
		}
	},
}

// cancelCommand is `noderpc cancel`: stop a running call.
var cancelCommand = &command{
	name:    "cancel",
	args:    "NODE ID",
	summary: "stop a running call",
	about: `
Stops the call ID on NODE: its whole process group gets SIGTERM, then
SIGKILL after the node's grace period. Prints the call's state after the
cancel. The call stays on the node until released.

Example:
  noderpc --insecure cancel 127.0.0.1:1811 4711:4712:1732200000.123456:9f86d081884c7d65
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).cancel },
}

// releaseCommand is `noderpc release`: forget a finished call.
var releaseCommand = &command{
	name:    "release",
	args:    "NODE ID",
	summary: "forget a finished call on its node",
	about: `
Tells NODE to forget the finished call ID and its result. A call nobody
releases is dropped after the node's retention period.

Example:
  noderpc --insecure release 127.0.0.1:1811 4711:4712:1732200000.123456:9f86d081884c7d65
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).release },
}

// callFlags are the flags of call.
type callFlags struct {
	timeout, abortAfter time.Duration
	concurrency         int
	ordered             bool
	// all takes the nodes from masterd instead of the arguments.
	all bool
}

func (a *app) call(ctx context.Context, args []string, f callFlags) int {
	nodes, fn, rest := splitCall(args)
	if f.all {
		if len(nodes) > 0 {
			return a.commandUsageError("--all runs on every up node: give no NODE, as in noderpc --master URL call --all %s", orDash(fn))
		}
		if len(args) == 0 {
			return a.commandUsageError("no function name given after --all")
		}
		fn, rest = args[0], args[1:]
		if meantAsNode(fn) {
			return a.commandUsageError("--all runs on every up node: give no NODE (%q), only FN [ARGS_JSON]", fn)
		}
	} else if err := callArgsError(args, nodes, fn); err != nil {
		return a.commandUsageError("%v", err)
	}
	raw, err := a.fnArgs(rest)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	if f.timeout < 0 || f.abortAfter < 0 {
		return a.commandUsageError("--timeout and --abort-after must not be negative")
	}
	var (
		clients []*master.Client
		status  = ExitOK // a node masterd lists up that cannot be called
	)
	if f.all {
		var ok bool
		if clients, status, ok = a.upClients(ctx); !ok {
			return status
		}
		nodes = make([]string, len(clients))
		for i, c := range clients {
			nodes[i] = c.Node()
		}
	} else if clients, err = a.clients(nodes, a.options()); err != nil {
		return a.commandUsageError("%v", err)
	}
	// A call's release waits in its client for a later start; there is
	// none, so Close sends it before noderpc exits.
	defer closeAll(clients)
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	w := a.watch(fn, nodes)
	p := &resultPrinter{a: a, w: w, multi: len(nodes) > 1 || f.all, timeout: f.timeout, ordered: f.ordered, status: status}
	master.CallEachStream(ctx, clients, fn, raw, f.concurrency, master.CallOptions{AbortAfter: f.abortAfter, OnLog: w.log}, p.land)
	w.stop()
	return p.status
}

func (a *app) wait(ctx context.Context, args []string, timeout time.Duration, keep bool) int {
	if err := nodeAndIDError(args); err != nil {
		return a.commandUsageError("%v", err)
	}
	node, id := args[0], args[1]
	if _, err := rpc.ParseCallID(id); err != nil {
		return a.commandUsageError("%v", err)
	}
	clients, err := a.clients([]string{node}, a.options())
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	defer closeAll(clients) // sends the call's release, as in call
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	w := a.watch("call "+id, []string{node})
	rec, err := clients[0].Await(ctx, id, master.CallOptions{OnLog: w.log, Keep: keep})
	if rec == nil && (errors.Is(err, rpc.ErrUnreachable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// Await's first round got no answer: the call may well still be
		// running, and its ID is known, so say how to wait for it.
		rec = &rpc.Call{ID: id, State: rpc.StateRunning}
	}
	p := &resultPrinter{a: a, w: w, timeout: timeout}
	p.land(0, master.Result{Node: node, Call: rec, Err: err})
	w.stop()
	return p.status
}

// closeAll closes clients, which sends the releases they hold, several
// at once as the fan-out made the calls: one by one, a thousand nodes
// would take a thousand round trips, and a silent one a socket timeout
// each.
func closeAll(clients []*master.Client) {
	next := make(chan *master.Client)
	var wg sync.WaitGroup
	for range min(len(clients), master.DefaultConcurrency) {
		wg.Go(func() {
			for c := range next {
				c.Close()
			}
		})
	}
	for _, c := range clients {
		next <- c
	}
	close(next)
	wg.Wait()
}

// resultPrinter prints the results of call and wait as the nodes land:
// each at once, or with ordered, in the order of the nodes given, each as
// soon as it and every node before it have landed. Its land is
// master.CallEachStream's deliver, so it is called by one goroutine.
type resultPrinter struct {
	a       *app
	w       *watcher
	multi   bool
	timeout time.Duration
	ordered bool

	held   map[int]master.Result // landed before an earlier node (ordered)
	next   int                   // the index of the next node to print (ordered)
	status int                   // the exit status so far
}

// land takes the result of the node at index i.
func (p *resultPrinter) land(i int, r master.Result) {
	p.status = worst(p.status, statusOf(r.Err))
	if !p.ordered {
		p.print(r)
		return
	}
	if p.held == nil {
		p.held = map[int]master.Result{}
	}
	p.held[i] = r
	for {
		r, ok := p.held[p.next]
		if !ok {
			return
		}
		delete(p.held, p.next)
		p.next++
		p.print(r)
	}
}

// print prints one node's result: on stdout, or its error on stderr.
func (p *resultPrinter) print(r master.Result) {
	a := p.a
	p.w.land(r.Node, func(log []string, dropped int) {
		if a.json {
			a.emitJSON(callOutput{header: newHeader(r.Node, r.Err), Call: r.Call, Log: log, LogDropped: dropped})
			return
		}
		if r.Err == nil {
			if p.multi {
				io.WriteString(a.stdout, r.Node+": ")
			}
			// Written as it is: through fmt, a result of tens of
			// megabytes would be copied into a buffer grown by doubling.
			a.stdout.Write(r.Call.Result)
			io.WriteString(a.stdout, "\n")
			return
		}
		a.printFailure(r, p.timeout)
	})
}

func (a *app) start(ctx context.Context, args []string, timeout, abortAfter time.Duration, requestID string) int {
	nodes, fn, rest := splitCall(args)
	if err := callArgsError(args, nodes, fn); err != nil {
		return a.commandUsageError("%v", err)
	}
	if len(nodes) != 1 {
		return a.commandUsageError("start takes one NODE, got %d: %q", len(nodes), nodes)
	}
	raw, err := a.fnArgs(rest)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	if timeout < 0 || abortAfter < 0 {
		return a.commandUsageError("--timeout and --abort-after must not be negative")
	}
	if len(requestID) > rpc.MaxRequestIDLen {
		return a.commandUsageError("--request-id is longer than %d bytes", rpc.MaxRequestIDLen)
	}
	clients, err := a.clients(nodes, a.options())
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	rec, err := clients[0].StartFunction(ctx, rpc.StartRequest{
		FnName:     fn,
		FnArgs:     raw,
		Timeout:    rpc.Seconds(timeout),
		AbortAfter: rpc.Seconds(abortAfter),
		RequestID:  requestID,
	})
	if err == nil && rec.Finished && rec.State != rpc.StateSucceeded {
		// It ended within --timeout, without success; noded always says
		// why, the fallback only keeps the error typed.
		why := rec.Error
		if why == nil {
			why = rpc.Errorf(rpc.KindFunctionFailed, "call ended %s", rec.State)
		}
		err = &master.CallError{Node: nodes[0], ID: rec.ID, FnName: fn, Err: why}
	}
	if a.json {
		a.emitJSON(callOutput{header: newHeader(nodes[0], err), Call: rec})
		return statusOf(err)
	}
	if rec != nil {
		fmt.Fprintln(a.stdout, rec.ID)
	}
	if err != nil {
		a.printFailure(master.Result{Node: nodes[0], Call: rec, Err: err}, timeout)
	}
	return statusOf(err)
}

// nodeAndID checks the "NODE ID" arguments of cancel and release.
func (a *app) nodeAndID(args []string) (*master.Client, string, int) {
	if err := nodeAndIDError(args); err != nil {
		return nil, "", a.commandUsageError("%v", err)
	}
	if _, err := rpc.ParseCallID(args[1]); err != nil {
		return nil, "", a.commandUsageError("%v", err)
	}
	clients, err := a.clients(args[:1], a.options())
	if err != nil {
		return nil, "", a.commandUsageError("%v", err)
	}
	return clients[0], args[1], ExitOK
}

func (a *app) cancel(ctx context.Context, args []string) int {
	client, id, status := a.nodeAndID(args)
	if client == nil {
		return status
	}
	rec, err := client.CancelFunction(ctx, id)
	if a.json {
		a.emitJSON(callOutput{header: newHeader(client.Node(), err), Call: rec})
		return statusOf(err)
	}
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		return statusOf(err)
	}
	fmt.Fprintf(a.stdout, "%s: call %s %s\n", client.Node(), rec.ID, rec.State)
	return ExitOK
}

func (a *app) release(ctx context.Context, args []string) int {
	client, id, status := a.nodeAndID(args)
	if client == nil {
		return status
	}
	err := client.ReleaseFunction(ctx, id)
	if a.json {
		a.emitJSON(newHeader(client.Node(), err))
		return statusOf(err)
	}
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		return statusOf(err)
	}
	fmt.Fprintf(a.stdout, "%s: call %s released\n", client.Node(), id)
	return ExitOK
}

// upClients asks masterd for the nodes it lists up and returns a client
// for each; ok is false, with the exit status, once a failure that
// leaves nothing to call is reported (masterd unreachable or refusing,
// no node up). A node listed up whose URL cannot be called is reported
// as that node's failure, and status says so.
func (a *app) upClients(ctx context.Context) (clients []*master.Client, status int, ok bool) {
	if _, err := a.masterURLs(); err != nil {
		return nil, a.commandUsageError("--all takes its nodes from masterd: %v", err), false
	}
	status = a.withCluster(func(c *master.Cluster) int {
		up, err := c.Up(ctx)
		if err != nil {
			return a.masterFailed(err)
		}
		if len(up) == 0 {
			fmt.Fprintf(a.stderr, "noderpc call: masterd %s lists no node up: nothing was run\n", c.Active())
			return ExitFailed
		}
		ok = true
		for _, u := range up {
			if u.Err != nil {
				// The node's own failure: the others run.
				if a.json {
					a.emitJSON(callOutput{header: newHeader(u.Node.URL, u.Err)})
				} else {
					fmt.Fprintln(a.stderr, u.Err)
				}
				status = ExitUnreachable
				continue
			}
			clients = append(clients, u.Client)
		}
		return status
	})
	return clients, status, ok
}
