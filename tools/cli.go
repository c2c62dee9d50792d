// Package tools is the noderpc command line: Run parses the global flags
// and one subcommand (call, start, wait, cancel, release, functions,
// calls, version, ping, nodes, node, config, bench, certs), talks to the
// nodes and to masterd through package master, prints, and returns the exit status. The certificate
// authority (tools/ca) and the load generator (tools/bench) are libraries
// it drives; flags, output and exit statuses stay here. The noderpc
// binary only calls Run, so tests run the whole command in-process.
package tools

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// Exit statuses of noderpc.
const (
	// ExitOK: every node answered and every function succeeded.
	ExitOK = 0
	// ExitFailed: a function failed (or was cancelled, aborted, not
	// found, refused, or still running when --timeout ended the wait).
	ExitFailed = 1
	// ExitUsage: the command line is wrong; no node was contacted.
	ExitUsage = 2
	// ExitUnreachable: a node could not be reached, answered outside the
	// protocol, or lost the call.
	ExitUnreachable = 3
)

// Run runs noderpc with args (without the program name) and returns its
// exit status. ctx ending (Ctrl-C) ends any wait.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, tty: isTerminal(stdout)}
	fs := flag.NewFlagSet("noderpc", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by usageError
	fs.BoolVar(&a.insecure, "insecure", false, "talk plain HTTP to nodes started with --insecure (loopback only) instead of mutual TLS")
	a.tlsFlags(fs)
	a.masterFlag(fs)
	fs.BoolVar(&a.json, "json", false, "print every output as JSON, one object per line")
	fs.DurationVar(&a.socketTimeout, "socket-timeout", master.DefaultTimeout, "longest wait for any one answer; a node is asked to wait at most half of it")
	fs.DurationVar(&a.unreachableAfter, "unreachable-after", master.DefaultRetryPolicies().Wait.MaxElapsed, "give up on a node that has answered nothing for this long (retries included)")
	fs.Int64Var(&a.maxAnswer, "max-answer", master.DefaultMaxAnswer, "largest answer in `bytes` read from a node; a node that sends more is answering outside the protocol (exit 3). Raise it for nodes run with a larger --max-result")
	version := fs.Bool("version", false, "print noderpc's version and exit")
	fs.Usage = func() {} // --help is answered below, once

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(fs)
			return ExitOK
		}
		return a.globalFlagError(fs, err)
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "insecure":
			if a.insecure {
				a.connFlags = append(a.connFlags, "--insecure")
			}
		case "cert", "key", "ca":
			a.connFlags = append(a.connFlags, "--"+f.Name, shellQuote(f.Value.String()))
		}
	})
	if *version {
		fmt.Fprintf(stdout, "noderpc %s (protocol %d)\n", rpc.Version, rpc.ProtocolVersion)
		return ExitOK
	}
	if fs.NArg() == 0 {
		return a.usageError("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		return a.help(fs, rest)
	}
	cmd, ok := commandsByName()[name]
	if !ok {
		return a.usageError("unknown command %q", name)
	}
	cfs := flag.NewFlagSet("noderpc "+name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	run := cmd.setup(cfs)
	a.cmd = cmd
	if err := cfs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.printHelp(stdout, cfs)
			return ExitOK
		}
		if moved, kept, ok := misplacedGlobal(fs, err, rest); ok {
			given := args[:len(args)-fs.NArg()]
			fixed := append(append(append(append([]string{"noderpc"}, given...), moved...), name), kept...)
			return a.commandUsageError("%s is a global flag: give it before the command, as in\n  %s", moved[0], shellJoin(fixed))
		}
		return a.commandUsageError("%s", flagError(cfs, err))
	}
	if code, ok := a.flagAfterArgs(fs, cfs, args); ok {
		return code
	}
	// A subcommand's --help (config set --help, bench sessions --help)
	// talks to no one, and needs no certificate.
	if !cmd.local && !asksHelp(cfs.Args()) {
		if err := a.loadTLS(); err != nil {
			return a.usageError("%v", err)
		}
	}
	if a.maxAnswer <= 0 {
		return a.usageError("--max-answer must be > 0, got %d", a.maxAnswer)
	}
	if a.unreachableAfter < a.socketTimeout {
		return a.usageError("--unreachable-after %s is shorter than --socket-timeout %s", a.unreachableAfter, a.socketTimeout)
	}
	return run(a, ctx, cfs.Args())
}

// app is what every command shares: the streams and the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// tty is true when stdout is a terminal: call and wait then show the
	// elapsed time and the log lines live.
	tty bool
	// cmd is the command being run.
	cmd *command

	insecure         bool
	certFile         string
	keyFile          string
	caFile           string
	masters          masterURLs
	tls              *tls.Config // from loadTLS; nil with --insecure
	json             bool
	socketTimeout    time.Duration
	unreachableAfter time.Duration
	maxAnswer        int64
	// connFlags are the global flags given that say how nodes are
	// reached, for the commands noderpc suggests running next.
	connFlags []string
}

// options are the master.Options of the global flags: every procedure
// gives up on a silent node after --unreachable-after.
func (a *app) options() master.Options {
	p := master.Policy{MaxElapsed: a.unreachableAfter}
	return master.Options{
		Insecure:  a.insecure,
		TLS:       a.tls,
		Timeout:   a.socketTimeout,
		MaxAnswer: a.maxAnswer,
		Retry:     master.RetryPolicies{Start: p, Wait: p, Cancel: p, Release: p, List: p, Version: p},
	}
}

// clients returns a client for each node address; a malformed address is
// a usage error.
func (a *app) clients(nodes []string, opts master.Options) ([]*master.Client, error) {
	var cs []*master.Client
	for _, n := range nodes {
		c, err := master.New(n, opts)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func (a *app) usage(fs *flag.FlagSet) {
	w := a.stdout
	fmt.Fprint(w, `Usage: noderpc [global flags] COMMAND [flags] ARGS

noderpc calls functions on noded nodes, as a master does: every answer is
bounded in time, and a node that does not answer is reported unreachable.
NODE is host:port (not a URL); nodes, node, config and call --all ask
masterd (--master URL) for the nodes instead. Global flags come before
COMMAND, the command's flags after it. Run noderpc COMMAND --help for a
command's flags and examples.

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Exit status: 0 succeeded, 1 a function failed, 2 bad usage,
3 a node (or masterd) could not be reached, answered outside the
protocol, or lost the call.

Global flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, `
Examples:
  noderpc --insecure call 127.0.0.1:1811 echo '{"hello": "node"}'
  noderpc --insecure call 10.0.0.1:1811 10.0.0.2:1811 node_info
  noderpc --insecure --json calls 127.0.0.1:1811
  noderpc --master https://master1:1812 nodes
`)
}

// globalFlagError reports an error of the global flags; a flag that only
// commands have is said to belong after its command.
func (a *app) globalFlagError(fs *flag.FlagSet, err error) int {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return a.usageError("%s", flagError(fs, err))
	}
	var owners []string
	for _, c := range commands {
		cfs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(cfs)
		if cfs.Lookup(name) != nil {
			owners = append(owners, c.name)
		}
	}
	if len(owners) == 0 {
		return a.usageError("unknown global flag --%s", name)
	}
	return a.usageError("--%s is a flag of %s, not a global flag: give it after the command, as in noderpc %s --%s ...",
		name, strings.Join(owners, ", "), owners[0], name)
}

// shellJoin joins args into a command line a shell reads back as args.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, s := range args {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}

// help answers "noderpc help" with the usage, and "noderpc help COMMAND"
// with the command's, as --help does: the first thing many try.
func (a *app) help(global *flag.FlagSet, args []string) int {
	if len(args) == 0 {
		a.usage(global)
		return ExitOK
	}
	cmd, ok := commandsByName()[args[0]]
	if !ok || len(args) > 1 {
		return a.usageError("help takes one command name, got %q", args)
	}
	cfs := flag.NewFlagSet("noderpc "+cmd.name, flag.ContinueOnError)
	cmd.setup(cfs)
	cmd.printHelp(a.stdout, cfs)
	return ExitOK
}

// flagAfterArgs refuses a flag given after a command's arguments, which
// the flag package leaves among them, saying where it goes instead
// (see trailingFlag); ok is false if there is none. args are all of
// noderpc's, global is parsed and cmd too.
func (a *app) flagAfterArgs(global, cmd *flag.FlagSet, args []string) (code int, ok bool) {
	rest := cmd.Args()
	name, isGlobal, found := trailingFlag(global, cmd, rest)
	if !found || a.cmd.local || (a.cmd.ownFlags != nil && a.cmd.ownFlags(rest)) { // certs and bench sessions read their subcommands' flags themselves

		return 0, false
	}
	fs := cmd
	if isGlobal {
		fs = global
	}
	moved, kept, _ := takeFlag(fs, name, rest)
	givenGlobal := args[:len(args)-global.NArg()]
	cmdArgs := global.Args()[1:]
	givenCmd := cmdArgs[:len(cmdArgs)-len(rest)]
	fixed := append([]string{"noderpc"}, givenGlobal...)
	where := "the command"
	if isGlobal {
		fixed = append(append(append(fixed, moved...), a.cmd.name), givenCmd...)
	} else {
		fixed = append(append(append(fixed, a.cmd.name), givenCmd...), moved...)
		where = "the arguments"
	}
	fixed = append(fixed, kept...)
	kind := "a global flag"
	if !isGlobal {
		kind = "a flag of " + a.cmd.name
	}
	return a.commandUsageError("%s is %s: give it before %s, as in\n  %s", moved[0], kind, where, shellJoin(fixed)), true
}

func (a *app) usageError(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "noderpc: %s\nRun noderpc --help for usage.\n", fmt.Sprintf(format, args...))
	return ExitUsage
}

func (a *app) commandUsageError(format string, args ...any) int {
	c := a.cmd
	fmt.Fprintf(a.stderr, "noderpc %s: %s\nUsage: noderpc [global flags] %s %s\nRun noderpc %s --help for more.\n",
		c.name, fmt.Sprintf(format, args...), c.name, c.args, c.name)
	return ExitUsage
}

// statusOf is the exit status an error of one node makes.
func statusOf(err error) int {
	var ce *master.CallError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, rpc.ErrUnreachable), errors.Is(err, rpc.ErrLost):
		return ExitUnreachable
	case errors.Is(err, rpc.ErrNotActive):
		// Every master reached was a standby for as long as the command
		// waited: the group's master is as unavailable as unreachable.
		return ExitUnreachable
	case errors.Is(err, rpc.ErrProtocolError) && !errors.As(err, &ce):
		// The node's answer broke the protocol (a function's broken
		// frame is a CallError, the function's failure).
		return ExitUnreachable
	}
	return ExitFailed
}

// worst combines the statuses of several nodes: unreachable outranks
// failed, which outranks success.
func worst(a, b int) int {
	rank := func(s int) int {
		switch s {
		case ExitUnreachable:
			return 2
		case ExitFailed:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// isTerminal reports whether w is a character device, which for stdout
// means a person is watching. It is a variable so that tests can watch
// as that person.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
