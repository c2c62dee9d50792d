package tools

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// runFunc runs a command with its positional arguments. The app comes
// first so that methods of app serve as runFuncs.
type runFunc func(a *app, ctx context.Context, args []string) int

// command is one subcommand: its flags are declared by setup, which
// returns the function that runs it once they are parsed.
type command struct {
	name string
	// aliases are other names that run the command, kept for scripts
	// written against an earlier name.
	aliases []string
	args    string // the synopsis of the positional arguments
	summary string
	// about is the description and examples shown by --help.
	about string
	setup func(fs *flag.FlagSet) runFunc
	// local commands talk to no node and need no certificate.
	local bool
	// ownFlags, when set, reports whether the command parses the flags
	// among these arguments itself (a subcommand's), so that they are
	// not refused as flags given after the arguments.
	ownFlags func(args []string) bool
}

// printHelp prints the command's --help to w.
func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: noderpc [global flags] %s [flags] %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.about))
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// commands are noderpc's subcommands, in the order --help lists them.
var commands = []*command{
	callCommand,
	startCommand,
	waitCommand,
	cancelCommand,
	releaseCommand,
	functionsCommand,
	callsCommand,
	versionCommand,
	pingCommand,
	nodesCommand,
	nodeCommand,
	configCommand,
	certsCommand,
	benchCommand,
}

func commandsByName() map[string]*command {
	m := make(map[string]*command, len(commands))
	for _, c := range commands {
		m[c.name] = c
		for _, alias := range c.aliases {
			m[alias] = c
		}
	}
	return m
}

// header starts every JSON output line: which node, and whether it
// succeeded, or why not.
type header struct {
	Node  string     `json:"node"`
	OK    bool       `json:"ok"`
	Error *rpc.Error `json:"error,omitempty"`
}

func newHeader(node string, err error) header {
	h := header{Node: node, OK: err == nil}
	if err != nil {
		h.Error = &rpc.Error{Kind: rpc.KindOf(err), Message: err.Error()}
	}
	return h
}

// callOutput is one node's line of call, wait and start with --json.
type callOutput struct {
	header
	// Call is the last record received, absent if the call never started.
	Call *rpc.Call `json:"call,omitempty"`
	// Log is the log lines received (call and wait): all of them, or
	// the last keptLogLines.
	Log []string `json:"log,omitempty"`
	// LogDropped counts the lines received before those in Log.
	LogDropped int `json:"log_dropped,omitempty"`
}

// emitJSON writes v as one line of JSON, results as the node sent them.
func (a *app) emitJSON(v any) {
	b, err := rpc.Marshal(v)
	if err != nil {
		// Every value printed is built from rpc types, which encode.
		panic(fmt.Sprintf("noderpc: encoding output: %v", err))
	}
	a.stdout.Write(append(b, '\n'))
}

// splitCall splits "NODE... FN [ARGS_JSON]": the nodes are the leading
// host:port arguments, which a function name never is.
func splitCall(args []string) (nodes []string, fn string, rest []string) {
	i := 0
	for i < len(args) && isNode(args[i]) {
		i++
	}
	nodes = args[:i]
	if i < len(args) {
		fn, rest = args[i], args[i+1:]
	}
	return nodes, fn, rest
}

// fnArgs reads the optional ARGS_JSON argument: JSON, or "-" for stdin.
func (a *app) fnArgs(rest []string) (json.RawMessage, error) {
	switch len(rest) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("too many arguments after ARGS_JSON: %q", rest[1:])
	}
	raw := []byte(rest[0])
	if rest[0] == "-" {
		var err error
		if raw, err = io.ReadAll(a.stdin); err != nil {
			return nil, fmt.Errorf("reading ARGS_JSON from stdin: %v", err)
		}
	}
	// Strictly, as the node decodes it: goccy's json.Valid takes a cut
	// literal such as "nul" for JSON.
	if err := rpc.CheckJSON(raw); err != nil {
		return nil, fmt.Errorf("ARGS_JSON is not valid JSON: %v: %q", err, rpc.ClipBytes(raw, 80))
	}
	return json.RawMessage(raw), nil
}

// isSet reports whether the flag name was given on the command line, as
// opposed to keeping its default.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
