package noded

import (
	"flag"
	"fmt"
	"time"

	"github.com/noderpc/noderpc/jobs"
)

// Config is everything noded can be told on its command line.
type Config struct {
	Listen        string
	Insecure      bool
	AddrFile      string
	FunctionsDir  string
	MaxRunning    int
	MaxWait       time.Duration
	MaxRequest    int
	MaxResult     int64
	MaxLogLines   int
	Retention     time.Duration
	ShutdownGrace time.Duration
	LogFormat     string
	LogLevel      string
	Version       bool
}

// Defaults of the flags that are not the jobs package's.
const (
	// DefaultListen is loopback only: a node must be opened to the
	// network on purpose. 1811 is the port of Ganeti's node daemon.
	DefaultListen       = "127.0.0.1:1811"
	DefaultFunctionsDir = "/usr/local/lib/noded/functions"
	DefaultMaxRequest   = 64 << 20
)

// flags registers every flag of noded on fs, bound to c.
func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", DefaultListen, "`address` to serve on (host:port; port 0 picks a free one)")
	fs.BoolVar(&c.Insecure, "insecure", false, "serve plain HTTP without authentication (loopback addresses only)")
	fs.StringVar(&c.AddrFile, "addr-file", "", "write the address actually served on to `file` once listening (for scripts and port 0)")
	fs.StringVar(&c.FunctionsDir, "functions-dir", DefaultFunctionsDir, "`directory` whose executable files are functions named after the file")
	fs.IntVar(&c.MaxRunning, "max-running", jobs.DefaultMaxRunning, "most calls running at once; more are refused with kind busy")
	fs.DurationVar(&c.MaxWait, "max-wait", jobs.DefaultMaxWait, "cap on the timeout of one StartFunction or WaitForFunction")
	fs.IntVar(&c.MaxRequest, "max-request", DefaultMaxRequest, "largest request body in `bytes`; larger ones are refused with kind too_large")
	fs.Int64Var(&c.MaxResult, "max-result", jobs.DefaultMaxResult, "largest function result in `bytes`; larger ones fail the call with result_too_large")
	fs.IntVar(&c.MaxLogLines, "max-log-lines", jobs.DefaultMaxLogLines, "log lines of each call held for WaitForFunction (the last ones)")
	fs.DurationVar(&c.Retention, "retention", jobs.DefaultRetention, "how long a finished call that nobody released is kept")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", jobs.DefaultGrace, "time a stopped function has between SIGTERM and SIGKILL")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
}

// check reports flag values no daemon could run with.
func (c *Config) check() error {
	switch {
	case c.MaxRunning <= 0:
		return fmt.Errorf("--max-running must be > 0, got %d", c.MaxRunning)
	case c.MaxWait <= 0:
		return fmt.Errorf("--max-wait must be > 0, got %s", c.MaxWait)
	case c.MaxRequest <= 0:
		return fmt.Errorf("--max-request must be > 0, got %d", c.MaxRequest)
	case c.MaxResult <= 0:
		return fmt.Errorf("--max-result must be > 0, got %d", c.MaxResult)
	case c.MaxLogLines <= 0:
		return fmt.Errorf("--max-log-lines must be > 0, got %d", c.MaxLogLines)
	case c.Retention <= 0:
		return fmt.Errorf("--retention must be > 0, got %s", c.Retention)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("--shutdown-grace must be > 0, got %s", c.ShutdownGrace)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	}
	return nil
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
	}
}
