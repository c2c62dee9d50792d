package tools

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// nodesCommand is `noderpc nodes`: the members masterd knows.
var nodesCommand = &command{
	name:    "nodes",
	args:    "",
	summary: "list the nodes masterd knows, up or down (needs --master)",
	about: `
Asks masterd (--master) for every node it knows and prints one line per
node: its name, state (up: it holds a live session; down: its session
lapsed, it left, or masterd has not heard from it since it restarted),
the URL it is called at, how long ago masterd last heard from it, its boot
id, its noded version and how many functions it offers. With --json it
prints masterd's answer as one object, with the group version.

Examples:
  noderpc --master https://master1:1812 nodes
  noderpc --insecure --master http://127.0.0.1:1812 --json nodes
  NODERPC_MASTER=http://127.0.0.1:1812 noderpc --insecure nodes
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).nodes },
}

// nodeCommand is `noderpc node`: everything masterd knows of one node.
var nodeCommand = &command{
	name:    "node",
	args:    "NAME",
	summary: "show what masterd knows of one node: facts, calls, configuration (needs --master)",
	about: `
Asks masterd (--master) for the node NAME and prints all it knows of it:
state, URL, last contact, when its session began, boot id, version,
session timeout, its functions, the calls it reported in its last hello
(a call marked LOST was running when the node restarted: it died with the
old boot), and its effective configuration. An unknown NAME exits 1.

Examples:
  noderpc --master https://master1:1812 node node7.example.com
  NODERPC_MASTER=http://127.0.0.1:1812 noderpc --insecure node bench-00001
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).node },
}

// configCommand is `noderpc config`: the group's and the nodes'
// configuration.
var configCommand = &command{
	name:    "config",
	args:    "get [NODE] | set [--node NAME] KEY=VALUE... | delete [--node NAME] KEY...",
	summary: "get, set and delete configuration, group-wide or of one node (needs --master)",
	about: `
config get prints the group-wide configuration, or with NODE that node's:
each key with its value and where it comes from (the node's own keys
override the group's).

config set sets KEY to VALUE for the whole group, or with --node for one
node, known or not yet joined. VALUE is JSON if it parses as JSON (a
number, true, null, "quoted", [1,2], {"a":1}), else it is taken as a
string: port=1811 sets a number, zone=eu-west a string, and zone='"1"'
the string "1". config delete removes keys. Both print the configuration
that results; nodes see the change at their next renewal.

Examples:
  noderpc --master https://master1:1812 config get
  noderpc --master https://master1:1812 config get node7
  noderpc --master https://master1:1812 config set log_level=debug max_calls=64
  noderpc --master https://master1:1812 config set --node node7 zone=eu-west labels='["gpu"]'
  noderpc --master https://master1:1812 config delete --node node7 zone
  NODERPC_MASTER=http://127.0.0.1:1812 noderpc --insecure config get
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).config },
}

// withCluster makes the master.Cluster of the global flags and runs do
// with it; a missing or malformed --master is a usage error.
func (a *app) withCluster(do func(*master.Cluster) int) int {
	c, err := a.cluster()
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	defer c.Close()
	return do(c)
}

// masterOutcome is the head of every JSON line a masterd command prints.
type masterOutcome struct {
	OK    bool       `json:"ok"`
	Error *rpc.Error `json:"error,omitempty"`
}

// masterFailed reports err, masterd's refusal or no answer at all, as a
// JSON line or on stderr, and returns the exit status it makes.
func (a *app) masterFailed(err error) int {
	if a.json {
		a.emitJSON(masterOutcome{Error: &rpc.Error{Kind: rpc.KindOf(err), Message: err.Error()}})
	} else {
		fmt.Fprintf(a.stderr, "noderpc %s: %v\n", a.cmd.name, err)
	}
	return statusOf(err)
}

func (a *app) nodes(ctx context.Context, args []string) int {
	if len(args) > 0 {
		return a.commandUsageError("nodes takes no argument, got %q (noderpc node NAME shows one node)", args)
	}
	return a.withCluster(func(c *master.Cluster) int {
		list, err := c.Nodes(ctx)
		if err != nil {
			return a.masterFailed(err)
		}
		if a.json {
			a.emitJSON(struct {
				masterOutcome
				*rpc.ListNodesResponse
			}{masterOutcome{OK: true}, list})
			return ExitOK
		}
		printNodes(a.stdout, list.Nodes, time.Now())
		return ExitOK
	})
}

// printNodes prints the table of noderpc nodes, ages taken at now.
func printNodes(w io.Writer, nodes []rpc.Node, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tLAST CONTACT\tBOOT ID\tVERSION\tFUNCTIONS")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.State, orDash(n.URL), age(n.LastContact, now),
			orDash(n.BootID), orDash(n.Version), len(n.Functions))
	}
	tw.Flush()
}

// age is how long before now t was, as "3s ago", or "never" for the zero
// time.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return d.Round(100*time.Millisecond).String() + " ago"
	case d < 24*time.Hour:
		return d.Round(time.Second).String() + " ago"
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) node(ctx context.Context, args []string) int {
	if len(args) != 1 {
		return a.commandUsageError("want one node NAME, got %d arguments: %q", len(args), args)
	}
	return a.withCluster(func(c *master.Cluster) int {
		n, err := c.Node(ctx, args[0])
		if err != nil {
			return a.masterFailed(err)
		}
		if a.json {
			a.emitJSON(struct {
				masterOutcome
				Node *rpc.Node `json:"node"`
			}{masterOutcome{OK: true}, n})
			return ExitOK
		}
		printNode(a.stdout, n, time.Now())
		return ExitOK
	})
}

// printNode prints noderpc node: one node's facts, then its functions,
// calls and configuration.
func printNode(w io.Writer, n *rpc.Node, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s)", t.Local().Format(time.DateTime), age(t, now))
	}
	fmt.Fprintf(tw, "name:\t%s\n", n.Name)
	fmt.Fprintf(tw, "state:\t%s\n", n.State)
	fmt.Fprintf(tw, "address:\t%s\n", orDash(n.URL))
	fmt.Fprintf(tw, "last contact:\t%s\n", when(n.LastContact))
	fmt.Fprintf(tw, "joined:\t%s\n", when(n.Joined))
	fmt.Fprintf(tw, "boot id:\t%s\n", orDash(n.BootID))
	fmt.Fprintf(tw, "version:\t%s (protocol %d)\n", orDash(n.Version), n.Protocol)
	fmt.Fprintf(tw, "session timeout:\t%s\n", time.Duration(n.SessionTimeout*float64(time.Second)))
	reachable := "unknown (not checked, or the check is under way)"
	switch {
	case n.Reachable:
		reachable = "yes, at its address"
	case n.Problem != "":
		reachable = "no: " + n.Problem
	}
	fmt.Fprintf(tw, "reachable:\t%s\n", reachable)
	tw.Flush()

	fmt.Fprintf(w, "\nfunctions (%d):\n", len(n.Functions))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range n.Functions {
		fmt.Fprintf(tw, "  %s\t%s\n", f.Name, f.Kind)
	}
	tw.Flush()

	fmt.Fprintf(w, "\ncalls (%d):\n", len(n.Calls))
	if len(n.Calls) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tFUNCTION\tSTATE\tSTARTED\tLOST")
		for _, c := range n.Calls {
			lost := "-"
			if c.Lost {
				lost = "LOST"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.ID, c.FnName, c.State, c.StartedAt.Local().Format(time.DateTime), lost)
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nconfiguration (%d):\n", len(n.Config))
	printConfig(w, n.Config, nil, "  ")
}

// printConfig prints the keys of cfg in order, "KEY = VALUE", each with
// where it comes from when own is not nil: the node's own keys, or the
// group's.
func printConfig(w io.Writer, cfg, own rpc.Config, indent string) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		fmt.Fprintf(tw, "%s%s\t= %s", indent, k, cfg[k])
		if own != nil {
			from := "group"
			if _, ok := own[k]; ok {
				from = "node"
			}
			fmt.Fprintf(tw, "\t(%s)", from)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// config runs config get, set or delete; set and delete parse their own
// --node.
func (a *app) config(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return a.commandUsageError("want get, set or delete")
	}
	if asksHelp(args) {
		a.cmd.printHelp(a.stdout, flag.NewFlagSet("", flag.ContinueOnError))
		return ExitOK
	}
	var (
		fetch func(*master.Cluster) (*rpc.ConfigResponse, error)
		err   error
	)
	switch sub, rest := args[0], args[1:]; sub {
	case "get":
		if len(rest) > 1 {
			return a.commandUsageError("config get takes at most one NODE, got %q", rest)
		}
		node := ""
		if len(rest) == 1 {
			node = rest[0]
		}
		fetch = func(c *master.Cluster) (*rpc.ConfigResponse, error) { return c.Config(ctx, node) }
	case "set", "delete":
		var req rpc.SetConfigRequest
		if req, err = configChange(sub, rest); err != nil {
			return a.commandUsageError("%v", err)
		}
		fetch = func(c *master.Cluster) (*rpc.ConfigResponse, error) { return c.SetConfig(ctx, req) }
	default:
		return a.commandUsageError("unknown config command %q: want get, set or delete", sub)
	}
	return a.withCluster(func(c *master.Cluster) int {
		cfg, err := fetch(c)
		if err != nil {
			return a.masterFailed(err)
		}
		if a.json {
			a.emitJSON(struct {
				masterOutcome
				*rpc.ConfigResponse
			}{masterOutcome{OK: true}, cfg})
			return ExitOK
		}
		if cfg.Node == "" {
			fmt.Fprintf(a.stdout, "group configuration (%d):\n", len(cfg.Effective))
			printConfig(a.stdout, cfg.Effective, nil, "  ")
			return ExitOK
		}
		fmt.Fprintf(a.stdout, "configuration of %s (%d):\n", cfg.Node, len(cfg.Effective))
		own := cfg.Own
		if own == nil {
			own = rpc.Config{}
		}
		printConfig(a.stdout, cfg.Effective, own, "  ")
		return ExitOK
	})
}

// configChange parses the arguments of config set (KEY=VALUE...) or
// config delete (KEY...), after an optional --node NAME.
func configChange(sub string, args []string) (rpc.SetConfigRequest, error) {
	var req rpc.SetConfigRequest
	fs := flag.NewFlagSet("noderpc config "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&req.Node, "node", "", "the node to configure (default: the whole group)")
	if err := fs.Parse(args); err != nil {
		return req, errors.New(flagError(fs, err))
	}
	if isSet(fs, "node") && req.Node == "" {
		return req, errors.New("--node needs a node name")
	}
	if fs.NArg() == 0 {
		if sub == "set" {
			return req, errors.New("config set wants KEY=VALUE arguments")
		}
		return req, errors.New("config delete wants KEY arguments")
	}
	for _, arg := range fs.Args() {
		if strings.HasPrefix(arg, "-") {
			return req, fmt.Errorf("flag %s after the keys: give it first, as in noderpc config %s --node NAME ...", arg, sub)
		}
	}
	if sub == "delete" {
		for _, k := range fs.Args() {
			if strings.Contains(k, "=") {
				return req, fmt.Errorf("config delete takes KEY alone, got %q (config set sets a value)", k)
			}
		}
		req.Delete = fs.Args()
		return req, nil
	}
	req.Set = rpc.Config{}
	for _, kv := range fs.Args() {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return req, fmt.Errorf("%q is not KEY=VALUE (config delete removes a key)", kv)
		case k == "":
			return req, fmt.Errorf("%q has no KEY before =", kv)
		}
		if _, dup := req.Set[k]; dup {
			return req, fmt.Errorf("key %q is set twice", k)
		}
		req.Set[k] = configValue(v)
	}
	return req, nil
}

// configValue is v as JSON if it is JSON, else v as a JSON string. It is
// checked strictly: goccy's json.Valid takes a cut literal such as "nul"
// for JSON, which then failed to encode with an obscure error.
func configValue(v string) json.RawMessage {
	if rpc.CheckJSON([]byte(v)) == nil {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v) // a string always encodes
	return b
}
