package tools

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/ca"
)

// certsCommand is `noderpc certs`: the cluster CA and its certificates,
// made by package ca.
var certsCommand = &command{
	name:    "certs",
	args:    "init [--force] [--days N] DIR | issue --dir DIR --node|--master|--observer NAME [flags]",
	summary: "make the cluster CA and the certificates of nodes, masters and observers",
	local:   true,
	about: `
certs init DIR creates the cluster CA: DIR/ca.crt and DIR/ca.key (ECDSA
P-256). Keep ca.key off the nodes: whoever holds it can mint a master.

certs issue --dir DIR --node NAME writes DIR/NAME.crt and DIR/NAME.key,
signed by DIR/ca.key: a node certificate serves noded and says the
node's hello to masterd (server and client auth; its names are NAME,
127.0.0.1 and ::1, and every --san). --master NAME issues a certificate
that may call every procedure and serves masterd (the same names);
--observer NAME a client certificate that may only read (Version,
ListFunctions, ListCalls, WaitForFunction, /metrics; masterd's nodes and
configuration).
The role is written as the URI name noderpc:role:ROLE (doc/security.md).

Keys are written with mode 0600 and every file through a rename, so a
reader never sees half of one. Nothing existing is overwritten without
--force.

Examples:
  noderpc certs init /etc/noderpc/ca
  noderpc certs issue --dir /etc/noderpc/ca --node node1.example.com --san 10.0.0.1
  noderpc certs issue --dir /etc/noderpc/ca --master master1
  noderpc certs issue --dir /etc/noderpc/ca --observer monitoring --days 90
  noderpc certs issue --dir /etc/noderpc/ca --node node1.example.com --san 10.0.0.1 --force   # rotate
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).certs },
}

// certsFlags are the flags certs init and certs issue share.
type certsFlags struct {
	fs        *flag.FlagSet
	force     bool
	days      int
	notBefore string
}

func newCertsFlags(sub string) *certsFlags {
	f := &certsFlags{fs: flag.NewFlagSet("noderpc certs "+sub, flag.ContinueOnError)}
	f.fs.SetOutput(io.Discard)
	f.fs.BoolVar(&f.force, "force", false, "overwrite existing keys and certificates")
	f.fs.IntVar(&f.days, "days", ca.DefaultCertDays, "days the certificate is valid for (certs init: default 3650)")
	f.fs.StringVar(&f.notBefore, "not-before", "", "start of validity, RFC 3339 (default: now, less 5 minutes of clock skew)")
	return f
}

// start reads --not-before; empty is the zero time, which package ca
// takes as now, backdated by the clock skew.
func (f *certsFlags) start() (time.Time, error) {
	if f.notBefore == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, f.notBefore)
	if err != nil {
		return time.Time{}, usageErr("--not-before %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", f.notBefore)
	}
	return t, nil
}

// certs runs certs init or certs issue; each parses its own flags.
func (a *app) certs(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return a.commandUsageError("want init or issue")
	}
	f := newCertsFlags(args[0])
	var run func() ([]string, error)
	switch args[0] {
	case "init":
		run = f.init
	case "issue":
		run = f.issue()
	default:
		return a.commandUsageError("unknown certs command %q: want init or issue", args[0])
	}
	if err := f.fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.cmd.printHelp(a.stdout, f.fs)
			return ExitOK
		}
		return a.commandUsageError("%s", flagError(f.fs, err))
	}
	if f.days <= 0 {
		return a.commandUsageError("--days must be > 0, got %d", f.days)
	}
	written, err := run()
	var uerr *usageError
	switch {
	case errors.As(err, &uerr), errors.Is(err, ca.ErrInvalid):
		return a.commandUsageError("%v", err)
	case errors.Is(err, ca.ErrExists):
		fmt.Fprintf(a.stderr, "noderpc certs %s: %v (pass --force to replace it)\n", args[0], err)
		return ExitFailed
	case err != nil:
		fmt.Fprintf(a.stderr, "noderpc certs %s: %v\n", args[0], err)
		return ExitFailed
	}
	for _, file := range written {
		fmt.Fprintf(a.stdout, "wrote %s\n", file)
	}
	return ExitOK
}

// init runs certs init DIR once the flags are parsed.
func (f *certsFlags) init() ([]string, error) {
	if f.fs.NArg() != 1 {
		return nil, usageErr("certs init takes one DIR, got %q", f.fs.Args())
	}
	if !isSet(f.fs, "days") {
		f.days = ca.DefaultCADays
	}
	nb, err := f.start()
	if err != nil {
		return nil, err
	}
	return ca.Init(f.fs.Arg(0), ca.InitOptions{NotBefore: nb, Days: f.days, Force: f.force})
}

// issue adds the flags of certs issue and returns what runs it once they
// are parsed.
func (f *certsFlags) issue() func() ([]string, error) {
	var req ca.IssueRequest
	dir := f.fs.String("dir", "", "`directory` of the CA (ca.crt, ca.key), where the files are written")
	node := f.fs.String("node", "", "issue a node certificate (server auth) for `NAME`")
	mst := f.fs.String("master", "", "issue a master certificate (client auth, every procedure) for `NAME`")
	obs := f.fs.String("observer", "", "issue an observer certificate (client auth, reads only) for `NAME`")
	f.fs.Func("san", "add a DNS name or IP address to the certificate's names (repeatable)", func(s string) error {
		req.SANs = append(req.SANs, s)
		return nil
	})
	return func() ([]string, error) {
		if f.fs.NArg() != 0 {
			return nil, usageErr("unexpected arguments %q", f.fs.Args())
		}
		if *dir == "" {
			return nil, usageErr("--dir is required")
		}
		n := 0
		for role, name := range map[rpc.Role]string{rpc.RoleNode: *node, rpc.RoleMaster: *mst, rpc.RoleObserver: *obs} {
			if name != "" {
				req.Role, req.Name = role, name
				n++
			}
		}
		if n != 1 {
			return nil, usageErr("give exactly one of --node, --master and --observer")
		}
		nb, err := f.start()
		if err != nil {
			return nil, err
		}
		req.NotBefore, req.Days, req.Force = nb, f.days, f.force
		return ca.Issue(*dir, req)
	}
}

// usageError is a certs command line that is wrong, as opposed to a
// failure to write the files.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}
