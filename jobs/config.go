package jobs

import (
	"log/slog"
	"time"
)

// Config holds the limits of a Table. Zero values take the defaults below.
type Config struct {
	// Resolver maps function names to processes. Required.
	Resolver Resolver
	// MaxRunning bounds the calls running at once; a start past it is
	// refused with kind busy.
	MaxRunning int
	// MaxWait caps the timeout of one StartFunction or WaitForFunction.
	MaxWait time.Duration
	// MaxResult bounds a function's stdout; past it the call fails with
	// result_too_large and the process is killed.
	MaxResult int64
	// MaxLogLines is how many of a call's last log lines are held.
	MaxLogLines int
	// MaxLogLine truncates longer log lines.
	MaxLogLine int
	// Retention is how long a finished call that nobody released is kept.
	Retention time.Duration
	// Grace is how long a stopped function process has between SIGTERM
	// and SIGKILL.
	Grace time.Duration
	// Logger receives a line per call start and end. Default: discard.
	Logger *slog.Logger
	// Now is the clock; tests inject one to test retention.
	Now func() time.Time
	// Observer is told of every start, end, refusal and release.
	Observer Observer
	// Warm is how many Go function processes are kept started and
	// greeted, ready for a call; 0 starts every call cold.
	Warm int
	// Containment says how a call's processes are kept together; the
	// zero value is ContainAuto. See ParseContainment.
	Containment Containment
	// WarmSpec is the process the warm pool starts: the Go function
	// process, which learns its function from the request. A resolved
	// spec with the same program and environment takes a warm process.
	WarmSpec Spec
}

// Defaults of Config.
const (
	DefaultMaxRunning  = 1000
	DefaultMaxWait     = 60 * time.Second
	DefaultMaxResult   = 16 << 20
	DefaultMaxLogLines = 1000
	DefaultMaxLogLine  = 4096
	DefaultRetention   = 15 * time.Minute
	DefaultGrace       = 10 * time.Second
)

func (c *Config) setDefaults() {
	orDefault(&c.MaxRunning, DefaultMaxRunning)
	orDefault(&c.MaxWait, DefaultMaxWait)
	orDefault(&c.MaxResult, DefaultMaxResult)
	orDefault(&c.MaxLogLines, DefaultMaxLogLines)
	orDefault(&c.MaxLogLine, DefaultMaxLogLine)
	orDefault(&c.Retention, DefaultRetention)
	orDefault(&c.Grace, DefaultGrace)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Containment == "" {
		c.Containment = ContainAuto
	}
}

// orDefault sets *v to def unless it is above zero.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
