package noded

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/noded/functions"
	"github.com/noderpc/noderpc/noded/membership"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Config is everything noded can be told on its command line or in its
// configuration file.
type Config struct {
	Listen        string
	Insecure      bool
	Cert          string
	Key           string
	ClientCA      string
	MaxConns      int
	MaxConnsPerIP int
	HeadTimeout   time.Duration
	AddrFile      string
	FunctionsDir  string
	// FunctionBinary is the program that runs Go functions; empty means
	// the one beside noded's executable, if any (functions.OpenBinary).
	FunctionBinary string
	MaxRunning     int
	MaxWait        time.Duration
	MaxRequest     int
	MaxBodies      int64
	MaxResult      int64
	MaxLogLines    int
	Retention      time.Duration
	ShutdownGrace  time.Duration
	LogFormat      string
	LogLevel       string
	Version        bool
	Warm           int
	FunctionProcs  int
	Containment    string

	// Masters are the masterd URLs noded says hello to (--master,
	// repeatable); none leaves the node out of any group.
	Masters MasterList
	// NodeName is the name the node joins under: the common name of its
	// certificate.
	NodeName string
	// Advertise is where masters should call the node; empty derives it
	// from the address served on.
	Advertise string
	// SessionTimeout, above 0, asks masterd for a longer session timeout
	// than its default.
	SessionTimeout time.Duration

	// ConfigFile is the configuration file read before the command
	// line is applied; empty means none.
	ConfigFile string
	// CheckConfig validates the configuration and exits.
	CheckConfig bool
	// PrintConfig prints the effective configuration as a configuration
	// file and exits.
	PrintConfig bool
}

// Defaults of the flags that are not the jobs package's.
const (
	// DefaultListen is loopback only: a node must be opened to the
	// network on purpose. 1811 is the port of Ganeti's node daemon.
	DefaultListen       = "127.0.0.1:1811"
	DefaultFunctionsDir = "/usr/local/lib/noded/functions"
	DefaultMaxRequest   = 64 << 20
	// DefaultMaxBodies lets eight bodies of the largest size be read at
	// once, and any number of ordinary ones.
	DefaultMaxBodies = 8 * DefaultMaxRequest
	// DefaultHeadTimeout is long enough for a TLS handshake and a request
	// head across a slow link, and short enough that connections that
	// send nothing give their slots back soon.
	DefaultHeadTimeout = 10 * time.Second
	// DefaultMaxConns is well above the calls a node runs at once
	// (jobs.DefaultMaxRunning), each of which a master may be waiting on
	// over a connection of its own.
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerIP is twice the connections fasthttp's client,
	// and so a master, holds to one node by default.
	DefaultMaxConnsPerIP = 1024
	// DefaultWarm covers a burst of calls as wide as a master's usual
	// fan-out concurrency to one node, at about 9 MB of memory each; see
	// doc/performance.md.
	DefaultWarm = 4
	// DefaultConfigFile is read when it exists; its absence is not an
	// error, unlike that of a file named with --config.
	DefaultConfigFile = "/etc/noded/noded.conf"
)

// ParseFlags parses noded's command line, with the configuration file it
// names (or the default one, when it exists) under it: see
// service.ParseFlags. The flag set is returned for --print-config.
func ParseFlags(args []string, help io.Writer) (Config, *flag.FlagSet, error) {
	var c Config
	fs, err := service.ParseFlags("noded", usage, args, help, &c.ConfigFile, c.flags)
	return c, fs, err
}

const usage = `Usage: noded [flags]

noded runs functions on this node for a noderpc master: each call in a
process of its own, answered within the caller's timeout with the result
or a function-call ID to wait on again. See doc/protocol.md, and
doc/operations.md for the systemd unit, the configuration file and the
metrics.

noded serves HTTPS only and requires a client certificate that chains
to the cluster CA (doc/security.md); make them with noderpc certs.
SIGHUP reloads --cert, --key and --client-ca.

Examples:
  noded --cert /etc/noded/node1.crt --key /etc/noded/node1.key \
        --client-ca /etc/noded/ca.crt --listen 0.0.0.0:1811
  noded --insecure --listen 127.0.0.1:1811   # plain HTTP, loopback only
  noded ... --listen 0.0.0.0:1811 --master https://master1:1812 \
        --node-name node1 --advertise https://node1:1811   # join a masterd

Every flag but --config, --check-config, --print-config and --version is
also a key of the configuration file (TOML), e.g. max-running = 500.

Flags:
`

// flags registers every flag of noded on fs, bound to c.
func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", DefaultListen, "`address` to serve on (host:port; port 0 picks a free one)")
	fs.BoolVar(&c.Insecure, "insecure", false, "serve plain HTTP without authentication (loopback addresses only) instead of HTTPS with client certificates")
	fs.StringVar(&c.Cert, "cert", "", "this node's certificate `file` (PEM), from noderpc certs issue --node; reloaded on SIGHUP")
	fs.StringVar(&c.Key, "key", "", "the private key `file` (PEM) of --cert; reloaded on SIGHUP")
	fs.StringVar(&c.ClientCA, "client-ca", "", "the cluster CA `file` (PEM) client certificates must chain to; reloaded on SIGHUP")
	fs.IntVar(&c.MaxConns, "max-conns", DefaultMaxConns, "most connections served at once; more are answered 503 and closed")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", DefaultMaxConnsPerIP, "most connections from one IP address at once; more are answered 429 and closed")
	fs.DurationVar(&c.HeadTimeout, "head-timeout", DefaultHeadTimeout, "time a connection has for its TLS handshake and each request's line and headers")
	fs.StringVar(&c.AddrFile, "addr-file", "", "write the address actually served on to `file` once listening (for scripts and port 0)")
	fs.StringVar(&c.FunctionsDir, "functions-dir", DefaultFunctionsDir, "`directory` whose executable files are functions named after the file")
	fs.StringVar(&c.FunctionBinary, "function-binary", "", "`file` that runs the Go functions, built from the same tree as noded (default: noded's executable name + \"-fn\" beside it, else noded's own binary)")
	fs.IntVar(&c.MaxRunning, "max-running", jobs.DefaultMaxRunning, "most calls running at once; more are refused with kind busy")
	fs.DurationVar(&c.MaxWait, "max-wait", jobs.DefaultMaxWait, "cap on the timeout of one StartFunction or WaitForFunction")
	fs.IntVar(&c.MaxRequest, "max-request", DefaultMaxRequest, "largest request body in `bytes`; larger ones are refused with kind too_large")
	fs.Int64Var(&c.MaxBodies, "max-request-memory", DefaultMaxBodies, "most `bytes` of request bodies held at once across all requests; taken as the bytes arrive; a request whose body would cross it is refused with kind busy")
	fs.Int64Var(&c.MaxResult, "max-result", jobs.DefaultMaxResult, "largest function result in `bytes`; larger ones fail the call with result_too_large")
	fs.IntVar(&c.MaxLogLines, "max-log-lines", jobs.DefaultMaxLogLines, "log lines of each call held for WaitForFunction (the last ones)")
	fs.DurationVar(&c.Retention, "retention", jobs.DefaultRetention, "how long a finished call that nobody released is kept")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", jobs.DefaultGrace, "time a stopped function has between SIGTERM and SIGKILL")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	fs.IntVar(&c.Warm, "warm", DefaultWarm, "Go function processes kept started and ready for a call (0: every call starts cold)")
	fs.IntVar(&c.FunctionProcs, "function-gomaxprocs", functions.DefaultProcs, "GOMAXPROCS of Go function processes (0: the Go runtime's default, or GOMAXPROCS from noded's environment)")
	fs.StringVar(&c.Containment, "containment", string(jobs.ContainAuto), "how a call's processes are kept together to be killed: auto, cgroup (a call that cannot have its own cgroup fails) or process-group")
	fs.Var(&c.Masters, "master", "`URL` of a masterd to say hello to (https://HOST:PORT; http:// on loopback with --insecure); repeat it, or separate URLs with commas, for several")
	fs.StringVar(&c.NodeName, "node-name", hostname(), "`name` the node joins its masters under: its certificate's common name")
	fs.StringVar(&c.Advertise, "advertise", "", "`URL` masters call this node at (default: the address served on, with https://, or http:// under --insecure)")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", 0, "session timeout to ask masterd for, within its bound (0: masterd's default)")
	fs.StringVar(&c.ConfigFile, "config", DefaultConfigFile, "configuration `file` (TOML; keys are the flag names, flags given on the command line win); '' for none")
	fs.BoolVar(&c.CheckConfig, "check-config", false, "check the configuration file and flags, then exit: 0 when valid, 2 when not")
	fs.BoolVar(&c.PrintConfig, "print-config", false, "print the effective configuration as a configuration file and exit")
}

// parse parses args into c, with the values of the configuration file
// under those of the command line. set must hold c's flags.
func (c *Config) parse(set *flag.FlagSet, args []string) error {
	return service.Parse(set, args, &c.ConfigFile, service.CommandLineOnly)
}

// check reports flag values no daemon could run with.
func (c *Config) check() error {
	positive := []struct {
		flag string
		ok   bool
		got  any
	}{
		{"max-running", c.MaxRunning > 0, c.MaxRunning},
		{"max-wait", c.MaxWait > 0, c.MaxWait},
		{"max-request", c.MaxRequest > 0, c.MaxRequest},
		{"head-timeout", c.HeadTimeout > 0, c.HeadTimeout},
		{"max-result", c.MaxResult > 0, c.MaxResult},
		{"max-log-lines", c.MaxLogLines > 0, c.MaxLogLines},
		{"retention", c.Retention > 0, c.Retention},
		{"shutdown-grace", c.ShutdownGrace > 0, c.ShutdownGrace},
		{"max-conns", c.MaxConns > 0, c.MaxConns},
		{"max-conns-per-ip", c.MaxConnsPerIP > 0, c.MaxConnsPerIP},
	}
	for _, p := range positive {
		if !p.ok {
			return fmt.Errorf("--%s must be > 0, got %v", p.flag, p.got)
		}
	}
	switch {
	case c.MaxBodies < int64(c.MaxRequest):
		return fmt.Errorf("--max-request-memory must be at least --max-request (%d), got %d", c.MaxRequest, c.MaxBodies)
	case c.Warm < 0:
		return fmt.Errorf("--warm must be >= 0, got %d", c.Warm)
	case c.FunctionProcs < 0:
		return fmt.Errorf("--function-gomaxprocs must be >= 0, got %d", c.FunctionProcs)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	}
	if _, err := jobs.ParseContainment(c.Containment); err != nil {
		return fmt.Errorf("--containment: %w", err)
	}
	return nil
}

// validate reports what no daemon could run with: values out of range,
// and a TLS set-up that is incomplete or plain HTTP off loopback.
func (c *Config) validate() error {
	if err := c.check(); err != nil {
		return err
	}
	if _, err := c.Logger(io.Discard); err != nil {
		return err
	}
	if err := service.CheckListen(c.Listen); err != nil {
		return err
	}
	if err := checkFunctionsDir(c.FunctionsDir); err != nil {
		return err
	}
	if err := c.checkMembership(); err != nil {
		return err
	}
	return service.CheckServing("noded", c.Insecure, c.tlsFiles(), c.Listen,
		"keys cert, key and client-ca of the configuration file; make them with noderpc certs init and noderpc certs issue --node NAME")
}

// checkMembership refuses master and advertised URLs of the wrong form
// or of the wrong scheme for --insecure, and a node that could not tell
// its masters its name or where to call it.
func (c *Config) checkMembership() error {
	if c.SessionTimeout < 0 {
		return fmt.Errorf("--session-timeout must be >= 0, got %v", c.SessionTimeout)
	}
	if c.Advertise != "" {
		if _, err := membership.CheckURL("--advertise", c.Advertise, c.Insecure); err != nil {
			return err
		}
	}
	if len(c.Masters) == 0 {
		return nil
	}
	for _, m := range c.Masters {
		if _, err := membership.CheckURL("--master", m, c.Insecure); err != nil {
			return err
		}
	}
	if c.NodeName == "" {
		return errors.New("--node-name is required with --master: the host name is not known")
	}
	if rpc.CheckNodeName(c.NodeName) != nil {
		// masterd refuses every hello of such a name.
		return fmt.Errorf("--node-name %.64q: a name of at most %d bytes without spaces or control or format characters, as its certificate's common name", c.NodeName, rpc.MaxNodeNameLen)
	}
	if c.Advertise == "" {
		// The listen address is called as is: one that means every
		// address of the host names none a master could call.
		host, _, _ := net.SplitHostPort(c.Listen) // checkListen passed
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("--listen %q serves every address of the host, which a master cannot call: pass --advertise https://NAME:PORT with a name of the node's certificate", c.Listen)
		}
	}
	return nil
}

// advertised is the URL masters call the node at: --advertise, or the
// address served on, addr, with the scheme noded serves.
func (c *Config) advertised(addr string) string {
	if c.Advertise != "" {
		return c.Advertise
	}
	if c.Insecure {
		return "http://" + addr
	}
	return "https://" + addr
}

// hostname is the default --node-name; empty when the kernel has none.
func hostname() string {
	h, _ := os.Hostname()
	return h
}

// MasterList is the value of the repeatable --master flag: each use adds
// one URL, or several separated by commas (the form of the configuration
// file key, a string).
type MasterList []string

// String joins the URLs with commas, the form Set reads back.
func (l *MasterList) String() string { return strings.Join(*l, ",") }

// Get returns the URLs, for flag.Getter.
func (l *MasterList) Get() any { return []string(*l) }

// Set adds the comma-separated URLs of v.
func (l *MasterList) Set(v string) error {
	for u := range strings.SplitSeq(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			*l = append(*l, u)
		}
	}
	return nil
}

// checkFunctionsDir refuses a --functions-dir that exists but cannot be
// read as a directory: a file, a symlink loop, one noded may not list.
// Served, it would make every executable function unknown and leave
// noderpc functions listing none, without a word of why. A missing
// directory is fine: the node has no executable functions until it is
// made.
func checkFunctionsDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--functions-dir %q: %v; give a directory noded can read", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("--functions-dir %q is %s, not a directory: give the directory that holds the function files, each named after its function", dir, functions.FileType(fi.Mode()))
	}
	d, err := os.Open(dir)
	if err == nil {
		_, err = d.ReadDir(1)
		d.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--functions-dir %q cannot be read: %v; give a directory noded can read", dir, err)
	}
	return nil
}

// checkFunctionBinary refuses the function binary Run would refuse
// (functions.OpenBinary), so that --check-config finds it before a
// restart does. It starts the binary once, so it is not part of
// validate: New starts nothing.
func checkFunctionBinary(given string) error {
	bin, err := functions.OpenBinary(given)
	if err != nil {
		return err
	}
	return bin.Close()
}

// Logger returns the logger --log-format and --log-level ask for,
// writing to w.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	return service.Logger(w, c.LogFormat, c.LogLevel)
}

// tlsFiles returns the files of c's TLS identity.
func (c *Config) tlsFiles() service.TLSFiles {
	return service.TLSFiles{Cert: c.Cert, Key: c.Key, ClientCA: c.ClientCA, Role: rpc.RoleNode, IssueHint: "noderpc certs issue --node NAME"}
}

// jobsConfig is the part of c the job table takes.
func (c *Config) jobsConfig() jobs.Config {
	return jobs.Config{
		MaxRunning:  c.MaxRunning,
		MaxWait:     c.MaxWait,
		MaxResult:   c.MaxResult,
		MaxLogLines: c.MaxLogLines,
		Retention:   c.Retention,
		Grace:       c.ShutdownGrace,
		Warm:        c.Warm,
		Containment: jobs.Containment(c.Containment),
	}
}
