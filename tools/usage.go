package tools

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// nodeError says what is wrong with s as a NODE, host:port with a port
// from 1 to 65535, and what to write instead; nil if s is one.
func nodeError(s string) error {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return fmt.Errorf("NODE %q is a URL; give host:port alone, as in %s (--insecure or --cert/--key/--ca choose plain HTTP or TLS)", s, exampleNode(u.Host))
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("NODE %q has no port; give host:port, as in %s (noded listens on 1811 unless told otherwise)", s, exampleNode(s))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("NODE %q has port %q; a port is a number from 1 to 65535, as in %s", s, port, net.JoinHostPort(host, "1811"))
	}
	return nil
}

// exampleNode is s with the default port, for a message that shows what
// to write.
func exampleNode(s string) string {
	if host, _, err := net.SplitHostPort(s); err == nil {
		return s
	} else if host = strings.Trim(s, "[]"); host != "" {
		return net.JoinHostPort(host, "1811")
	}
	return "127.0.0.1:1811"
}

// isNode reports whether s is a NODE.
func isNode(s string) bool { return nodeError(s) == nil }

// meantAsNode reports whether s, found where a function name is expected,
// was meant as a NODE: a URL, an IP address, "localhost", or host:port
// with a bad port. Function names are none of these.
func meantAsNode(s string) bool {
	if strings.Contains(s, "://") || strings.Contains(s, ":") || s == "localhost" {
		return true
	}
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

// checkNodes returns the error of the first argument that is not a NODE.
func checkNodes(nodes []string) error {
	if len(nodes) == 0 {
		return errors.New("no NODE (host:port) given")
	}
	for _, n := range nodes {
		if err := nodeError(n); err != nil {
			return err
		}
	}
	return nil
}

// flagFailure matches the flag package's complaint about a value.
var flagFailure = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-(\S+): (.*)$`)

// flagError rewrites an error of fs.Parse to say what to write: the flag
// package names flags with one dash, and says only "parse error" about a
// bad number or duration.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s", name)
	}
	m := flagFailure.FindStringSubmatch(msg)
	if m == nil {
		return strings.Replace(msg, " -", " --", 1)
	}
	value, name, why := m[1], m[2], m[3]
	if f := fs.Lookup(name); f != nil && why == "parse error" {
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				why = "want a duration with a unit, as in 300ms, 5s or 2m"
				if _, err := strconv.ParseFloat(value, 64); err == nil {
					why = fmt.Sprintf("a duration needs a unit: write %ss (or %sm, %sms)", value, value, value)
				}
			case int, int64, uint, uint64:
				why = "want a whole number"
			case bool:
				why = "want true or false"
			}
		}
	}
	return fmt.Sprintf("--%s %q: %s", name, value, why)
}

// misplacedGlobal returns, for a command's args that fail on a flag the
// command does not have, the global flag of that name and the args with
// it (and its value) taken out; ok is false if the flag is not global.
func misplacedGlobal(global *flag.FlagSet, err error, args []string) (moved, rest []string, ok bool) {
	name, found := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !found || global.Lookup(name) == nil {
		return nil, nil, false
	}
	return takeFlag(global, name, args)
}

// takeFlag returns the first flag name of fs in args, with its value,
// and the args without them; ok is false if args hold no such flag.
func takeFlag(fs *flag.FlagSet, name string, args []string) (moved, rest []string, ok bool) {
	for i, arg := range args {
		bare := strings.TrimLeft(arg, "-")
		if !strings.HasPrefix(arg, "-") || (bare != name && !strings.HasPrefix(bare, name+"=")) {
			continue
		}
		n := 1
		if b, isBool := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); bare == name && !(isBool && b.IsBoolFlag()) && i+1 < len(args) {
			n = 2 // --flag value
		}
		moved = append(moved, args[i:i+n]...)
		rest = append(append(rest, args[:i]...), args[i+n:]...)
		return moved, rest, true
	}
	return nil, nil, false
}

// trailingFlag returns the name of the first flag, global or of the
// command, among the command's arguments, where the flag package no
// longer reads flags ("noderpc ping NODE --json"): taken for a NODE,
// ARGS_JSON or an ID, it would be refused for what it is not. Values
// that merely start with "-" (a negative number as ARGS_JSON, "-" for
// stdin) name no flag; "--" ends the search.
func trailingFlag(global, cmd *flag.FlagSet, args []string) (name string, isGlobal, ok bool) {
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if !strings.HasPrefix(arg, "-") {
			continue
		}
		name, _, _ = strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch {
		case name == "":
		case cmd.Lookup(name) != nil:
			return name, false, true
		case global.Lookup(name) != nil:
			return name, true, true
		}
	}
	return "", false, false
}

// asksHelp reports whether a command's arguments ask for help, as a
// subcommand's flags do (config set --help): the flag package's -h,
// -help and their double-dash forms, before any "--".
func asksHelp(args []string) bool {
	for _, arg := range args {
		switch arg {
		case "--":
			return false
		case "-h", "--h", "-help", "--help":
			return true
		}
	}
	return false
}

// callArgsError checks the "NODE... FN" of call and start, as split by
// splitCall, and says what is wrong with them.
func callArgsError(args, nodes []string, fn string) error {
	switch {
	case len(nodes) == 0 && len(args) == 0:
		return errors.New("no NODE (host:port) given")
	case len(nodes) == 0 && len(args) == 1 && !meantAsNode(args[0]):
		return fmt.Errorf("no NODE (host:port) given before the function name %q, as in noderpc call 127.0.0.1:1811 %s", args[0], args[0])
	case len(nodes) == 0:
		return nodeError(args[0])
	case fn == "":
		return errors.New("no function name given after the nodes")
	case strings.HasPrefix(fn, "-"):
		return fmt.Errorf("flag %s after the nodes: flags come before them, as in noderpc [global flags] COMMAND [flags] NODE... FN", fn)
	case meantAsNode(fn):
		return nodeError(fn)
	}
	return nil
}

// nodeAndIDError checks the "NODE ID" of wait, cancel and release.
func nodeAndIDError(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want a NODE (host:port) and a call ID, got %d arguments: %q", len(args), args)
	}
	return nodeError(args[0])
}
