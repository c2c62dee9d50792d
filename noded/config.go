package noded

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/noderpc/noderpc/jobs"
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
	Containment    string

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

// commandLineOnly are the flags that say what noded should do this time
// rather than how the daemon runs: they are not keys of the configuration
// file. Every other flag is a key of the same name.
var commandLineOnly = map[string]bool{
	"config":       true,
	"check-config": true,
	"print-config": true,
	"version":      true,
}

// ParseFlags parses noded's command line, with the configuration file it
// names (or the default one, when it exists) under it. Usage text and
// flag errors go to stderr. A bad command line or file is a *UsageError;
// --help is flag.ErrHelp. The flag set is returned for --print-config.
func ParseFlags(args []string, stderr io.Writer) (Config, *flag.FlagSet, error) {
	var c Config
	fs := flag.NewFlagSet("noded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, fs, err
		}
		return c, fs, &UsageError{err}
	}
	return c, fs, nil
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
	fs.Int64Var(&c.MaxBodies, "max-request-memory", DefaultMaxBodies, "most `bytes` of request bodies held at once across all requests; past it a request is refused with kind busy before its body is read")
	fs.Int64Var(&c.MaxResult, "max-result", jobs.DefaultMaxResult, "largest function result in `bytes`; larger ones fail the call with result_too_large")
	fs.IntVar(&c.MaxLogLines, "max-log-lines", jobs.DefaultMaxLogLines, "log lines of each call held for WaitForFunction (the last ones)")
	fs.DurationVar(&c.Retention, "retention", jobs.DefaultRetention, "how long a finished call that nobody released is kept")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", jobs.DefaultGrace, "time a stopped function has between SIGTERM and SIGKILL")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	fs.IntVar(&c.Warm, "warm", DefaultWarm, "Go function processes kept started and ready for a call (0: every call starts cold)")
	fs.StringVar(&c.Containment, "containment", string(jobs.ContainAuto), "how a call's processes are kept together to be killed: auto, cgroup or process-group")
	fs.StringVar(&c.ConfigFile, "config", DefaultConfigFile, "configuration `file` (TOML; keys are the flag names, flags given on the command line win); '' for none")
	fs.BoolVar(&c.CheckConfig, "check-config", false, "check the configuration file and flags, then exit: 0 when valid, 2 when not")
	fs.BoolVar(&c.PrintConfig, "print-config", false, "print the effective configuration as a configuration file and exit")
}

// parse parses args into c, with the values of the configuration file
// under those of the command line. set must hold c's flags.
func (c *Config) parse(set *flag.FlagSet, args []string) error {
	if err := set.Parse(args); err != nil {
		return err
	}
	if set.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", set.Args())
	}
	onCommandLine := make(map[string]bool)
	set.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	if c.ConfigFile == "" {
		return nil
	}
	data, err := os.ReadFile(c.ConfigFile)
	if errors.Is(err, fs.ErrNotExist) && !onCommandLine["config"] {
		// The default file is optional: noded runs on flags alone.
		c.ConfigFile = ""
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the configuration file: %w", err)
	}
	if err := applyConfig(set, data, onCommandLine); err != nil {
		return fmt.Errorf("configuration file %s: %w", c.ConfigFile, err)
	}
	return nil
}

// applyConfig sets the flags of fs from a TOML document whose keys are
// flag names, except those in skip (given on the command line). Unknown
// keys and values of the wrong type are errors: a typo in a key must not
// silently leave the default in force.
func applyConfig(fs *flag.FlagSet, data []byte, skip map[string]bool) error {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("line %d, column %d: %v", row, col, de.Error())
		}
		return err
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || commandLineOnly[k] {
			errs = append(errs, fmt.Errorf("unknown key %q (the keys are the flag names of noded --help, without the dashes, except %s)", k, strings.Join(sortedKeys(commandLineOnly), ", ")))
			continue
		}
		if skip[k] {
			continue
		}
		text, err := flagText(f, doc[k])
		if err == nil {
			if serr := fs.Set(k, text); serr != nil {
				err = fmt.Errorf("invalid value %q: %v", text, serr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %v", k, err))
		}
	}
	return errors.Join(errs...)
}

// flagText turns a TOML value into the text its flag parses, insisting on
// the TOML type that matches the flag's: a duration is a string like
// "10s", a number is an integer, a switch is true or false.
func flagText(f *flag.Flag, v any) (string, error) {
	var want any
	if g, ok := f.Value.(flag.Getter); ok {
		want = g.Get()
	}
	switch want.(type) {
	case bool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("want true or false, got %s", tomlType(v))
	case time.Duration:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a duration string such as \"10s\" or \"15m\", got %s", tomlType(v))
	case int, int64, uint, uint64:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want an integer, got %s", tomlType(v))
	case float64:
		switch n := v.(type) {
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		case int64:
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want a number, got %s", tomlType(v))
	default:
		// Strings, and flag types that parse text of their own.
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a string, got %s", tomlType(v))
	}
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table (the file is flat: key = value lines only)"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// writeConfig writes the values of fs's flags as a configuration file that
// applyConfig reads back to the same values, each key under its help text.
func writeConfig(w io.Writer, fs *flag.FlagSet) error {
	var buf bytes.Buffer
	buf.WriteString("# noded configuration: every key is the flag of the same name (noded --help);\n# a flag given on the command line wins over its key here.\n")
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || commandLineOnly[f.Name] {
			return
		}
		var v any = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			switch x := g.Get().(type) {
			case bool, int, int64, uint, uint64, float64:
				v = x
			}
		}
		// Marshalling a one-key table quotes strings the TOML way.
		line, merr := toml.Marshal(map[string]any{f.Name: v})
		if merr != nil {
			err = fmt.Errorf("flag %s: %w", f.Name, merr)
			return
		}
		_, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&buf, "\n# %s\n", usage)
		buf.Write(line)
	})
	if err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
	if err := checkListen(c.Listen); err != nil {
		return err
	}
	given := c.Cert != "" || c.Key != "" || c.ClientCA != ""
	switch {
	case c.Insecure && given:
		return errors.New("--insecure serves plain HTTP, which takes no --cert, --key or --client-ca: drop one or the other")
	case c.Insecure:
		return checkLoopback(c.Listen)
	case c.Cert == "" || c.Key == "" || c.ClientCA == "":
		return errors.New("noded serves HTTPS with client certificates: pass --cert FILE --key FILE --client-ca FILE " +
			"(keys cert, key and client-ca of the configuration file; make them with noderpc certs init and noderpc certs issue --node NAME), " +
			"or --insecure to serve plain HTTP on a loopback --listen address")
	}
	return nil
}

// checkListen refuses a --listen address net.Listen would refuse for its
// form, so that --check-config finds it and the daemon exits 2, not 1.
func checkListen(listen string) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:1811 or [::1]:1811: %v", listen, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("--listen %q: the port must be a number from 0 to 65535", listen)
	}
	return nil
}

// checkLoopback refuses a plain-HTTP listen address that is not loopback:
// whoever reaches noded can run anything on the node.
func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--insecure refuses --listen %q: plain HTTP is only served on loopback addresses (127.0.0.1, ::1)", listen)
	}
	return nil
}

// Logger returns the logger --log-format and --log-level ask for,
// writing to w.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// tlsFiles returns the files of c's TLS identity.
func (c *Config) tlsFiles() tlsFiles {
	return tlsFiles{cert: c.Cert, key: c.Key, clientCA: c.ClientCA}
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
