// Package jobs is noded's table of function calls.
//
// Each call is one function process, supervised from start to reap: its
// stdout is read through a size limit for the result, its stderr line by
// line into a bounded log tail, and its process group is killed on cancel,
// abort and shutdown. Each call is an explicit state machine (see
// state.go); waiting on a call is event-driven, never a polling loop.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/rpc"
)

// Resolver finds out how to run a function by name. *backend.Functions is
// the real one.
type Resolver interface {
	Resolve(name string) (backend.Spec, error)
}

var _ Resolver = (*backend.Functions)(nil)

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
	// zero value is ContainAuto.
	Containment Containment
	// WarmSpec is the process the warm pool starts: the Go function
	// process, which learns its function from the request. A resolved
	// spec with the same program and environment takes a warm process.
	WarmSpec backend.Spec
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
	if c.MaxRunning <= 0 {
		c.MaxRunning = DefaultMaxRunning
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxResult <= 0 {
		c.MaxResult = DefaultMaxResult
	}
	if c.MaxLogLines <= 0 {
		c.MaxLogLines = DefaultMaxLogLines
	}
	if c.MaxLogLine <= 0 {
		c.MaxLogLine = DefaultMaxLogLine
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
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

// Table holds every call of this daemon, running or finished and not yet
// released or expired.
type Table struct {
	cfg     Config
	pid     int
	started time.Time

	mu        sync.Mutex
	calls     map[string]*call
	byRequest map[string]*call
	pending   map[string]chan struct{} // request IDs whose start is under way
	running   int
	spawning  int // of running, the starts reserved but not yet in calls
	closed    bool
	// supervisors counts calls whose process is not yet reaped,
	// including starts reserved but not yet spawned.
	supervisors sync.WaitGroup
	tag         string   // the DaemonEnv mark of this table's processes
	pool        *pool    // nil without Warm
	cgroups     *cgroups // nil when calls are contained by process groups only
	// cgroupsRefused is set once the kernel refused to start a process
	// in a call's cgroup; calls then use process groups only.
	cgroupsRefused atomic.Bool
}

// New returns an empty table. Its IDs carry this process's PID and the
// time it was made: an ID with an earlier time is of an earlier daemon.
// It fails only when cgroup containment was demanded and is unavailable.
func New(cfg Config) (*Table, error) {
	cfg.setDefaults()
	t := &Table{
		cfg:       cfg,
		pid:       os.Getpid(),
		started:   cfg.Now(),
		calls:     make(map[string]*call),
		byRequest: make(map[string]*call),
		pending:   make(map[string]chan struct{}),
	}
	tag, err := daemonTag()
	if err != nil {
		return nil, fmt.Errorf("reading this process's start time: %w", err)
	}
	t.tag = tag
	if n := killOrphans(cfg.Logger); n > 0 {
		cfg.Logger.Info("killed processes left by earlier daemons", "count", n)
	}
	switch cfg.Containment {
	case ContainAuto, ContainCgroup:
		cg, err := newCgroups(cfg.Logger)
		if err != nil {
			if cfg.Containment == ContainCgroup {
				return nil, fmt.Errorf("cgroup containment: %w", err)
			}
			cfg.Logger.Info("calls are contained by process groups only: cgroups are not usable here", "err", err)
		}
		t.cgroups = cg
	case ContainProcessGroup:
	default:
		return nil, fmt.Errorf("unknown containment %q (want auto, cgroup or process-group)", cfg.Containment)
	}
	if cfg.Warm > 0 {
		t.pool = newPool(cfg.WarmSpec, cfg.Warm, t.spawn, cfg.Logger)
	}
	return t, nil
}

// Containment reports how calls are contained: cgroup or process-group.
func (t *Table) Containment() Containment {
	if t.cgroups != nil && !t.cgroupsRefused.Load() {
		return ContainCgroup
	}
	return ContainProcessGroup
}

// spawn starts a function process, in a cgroup of its own when the table
// has cgroups. A cgroup that cannot be made falls back to the process
// group for that call rather than failing it.
func (t *Table) spawn(spec backend.Spec) (*process, error) {
	var cg *cgroup
	if t.cgroups != nil && !t.cgroupsRefused.Load() {
		var err error
		if cg, err = t.cgroups.create(); err != nil {
			t.cfg.Logger.Warn("starting a call without its own cgroup", "fn", spec.Name, "err", err)
		}
	}
	p, err := spawn(spec, cg, t.tag)
	if err != nil && cg != nil {
		cg.remove()
		// Try once more without the cgroup. If that works, the kernel
		// refused the cgroup itself (a parent with controllers enabled
		// and processes of its own, say): contain calls by process group
		// from now on rather than fail them.
		if p, err2 := spawn(spec, nil, t.tag); err2 == nil {
			if t.cgroupsRefused.CompareAndSwap(false, true) {
				t.cfg.Logger.Warn("the kernel refuses to start calls in their own cgroup; containing them by process group only", "err", err)
			}
			return p, nil
		}
	}
	return p, err
}

// Started is when the table was made; IDs from before it are lost.
func (t *Table) Started() time.Time { return t.started }

// Start runs req's function in a new process and waits up to req.Timeout
// (capped at MaxWait) for it to finish. A start with a request_id that the
// table already holds starts nothing and waits on the first call instead.
func (t *Table) Start(ctx context.Context, req *rpc.StartRequest) (*rpc.Call, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	spec, err := t.cfg.Resolver.Resolve(req.FnName)
	if err != nil {
		t.cfg.Observer.CallRejected(req.FnName, rpc.KindOf(err))
		return nil, err
	}
	timeout := t.capWait(req.Timeout)
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			t.cfg.Observer.CallRejected(req.FnName, rpc.KindShuttingDown)
			return nil, rpc.Errorf(rpc.KindShuttingDown, "noded is shutting down and starts no new calls")
		}
		if req.RequestID != "" {
			if c, ok := t.byRequest[req.RequestID]; ok {
				t.mu.Unlock()
				if c.fnName != req.FnName {
					return nil, rpc.Errorf(rpc.KindBadRequest, "request_id %q was used for a call of %q, not %q", req.RequestID, c.fnName, req.FnName)
				}
				return t.wait(ctx, c, timeout, req.LogOffset, false), nil
			}
			if ch, ok := t.pending[req.RequestID]; ok {
				// The same start is being spawned right now: wait for it
				// and answer its record rather than run the function twice.
				t.mu.Unlock()
				select {
				case <-ch:
					continue
				case <-ctx.Done():
					return nil, rpc.Errorf(rpc.KindShuttingDown, "request abandoned: %v", ctx.Err())
				}
			}
		}
		if t.running >= t.cfg.MaxRunning {
			t.mu.Unlock()
			t.cfg.Observer.CallRejected(req.FnName, rpc.KindBusy)
			return nil, rpc.Errorf(rpc.KindBusy, "%d calls are running, the limit of this node", t.cfg.MaxRunning)
		}
		t.running++
		t.spawning++
		t.supervisors.Add(1)
		if req.RequestID != "" {
			t.pending[req.RequestID] = make(chan struct{})
		}
		t.mu.Unlock()
		break
	}

	c, err := t.launch(spec, req)

	t.mu.Lock()
	t.spawning--
	if req.RequestID != "" {
		close(t.pending[req.RequestID])
		delete(t.pending, req.RequestID)
	}
	if err != nil {
		t.running--
		t.mu.Unlock()
		t.supervisors.Done()
		t.cfg.Observer.CallRejected(req.FnName, rpc.KindOf(err))
		return nil, err
	}
	t.calls[c.id] = c
	if req.RequestID != "" {
		t.byRequest[req.RequestID] = c
	}
	closed := t.closed
	t.mu.Unlock()

	go t.supervise(c, req.FnArgs)
	if closed {
		// Shutdown began while this call was spawning and did not see it.
		c.stop(rpc.KindCancelled, "noded is shutting down", t.cfg.Grace)
	}
	return t.wait(ctx, c, timeout, req.LogOffset, false), nil
}

// launch spawns the function process and builds its call.
func (t *Table) launch(spec backend.Spec, req *rpc.StartRequest) (*call, error) {
	before := time.Now()
	var p *process
	warm := false
	if t.pool != nil && t.pool.matches(spec) {
		p = t.pool.take()
		warm = p != nil
	}
	if p == nil {
		var err error
		if p, err = t.spawn(spec); err != nil {
			return nil, spawnError(req.FnName, err)
		}
	}
	t.cfg.Observer.CallStarted(req.FnName, time.Since(before))
	now := t.cfg.Now()
	c := &call{
		id:        rpc.NewCallID(t.pid, p.pid, now).String(),
		fnName:    req.FnName,
		requestID: req.RequestID,
		started:   now,
		proc:      p,
		done:      make(chan struct{}),
		state:     rpc.StateRunning,
		log:       logTail{max: t.cfg.MaxLogLines},
	}
	if d := rpc.Duration(req.AbortAfter); d > 0 {
		c.abortTimer = time.AfterFunc(d, func() {
			c.stop(rpc.KindAborted, "ran longer than abort_after "+d.String(), t.cfg.Grace)
		})
	}
	t.cfg.Logger.Info("call started", "call_id", c.id, "fn", c.fnName, "request_id", c.requestID, "warm", warm)
	return c, nil
}

// spawnError is the request error for a function process that could not
// be started. Out of PIDs, threads or memory for now is busy, because a
// retry later may well succeed; anything else is internal.
func spawnError(fn string, err error) *rpc.Error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) {
		return rpc.Errorf(rpc.KindBusy, "function %s: this node cannot start another process now: %v", fn, err)
	}
	return rpc.Errorf(rpc.KindInternal, "function %s: %v", fn, err)
}

// Wait waits up to req.Timeout (capped at MaxWait) for the call to finish
// and returns its record with the log lines from req.LogOffset on.
func (t *Table) Wait(ctx context.Context, req *rpc.WaitRequest) (*rpc.Call, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	c, err := t.lookup(req.ID)
	if err != nil {
		return nil, err
	}
	return t.wait(ctx, c, t.capWait(req.Timeout), req.LogOffset, req.WakeOnLog), nil
}

// Cancel stops a running call: SIGTERM to its process group, SIGKILL after
// the grace period. It waits up to wait (capped at MaxWait) for the
// process to be reaped and returns the record, which may still say running
// if the function takes its grace. Cancelling a finished call changes
// nothing.
func (t *Table) Cancel(ctx context.Context, id string, wait time.Duration) (*rpc.Call, error) {
	c, err := t.lookup(id)
	if err != nil {
		return nil, err
	}
	c.stop(rpc.KindCancelled, "cancelled by request", t.cfg.Grace)
	return t.wait(ctx, c, min(wait, t.cfg.MaxWait), 0, false), nil
}

// Release forgets a finished call. Releasing a running call is refused:
// its result would be lost while its process still runs.
func (t *Table) Release(id string) error {
	c, err := t.lookup(id)
	if err != nil {
		return err
	}
	select {
	case <-c.done:
	default:
		return rpc.Errorf(rpc.KindBadRequest, "call %s is still running; cancel it or wait for it before releasing it", id)
	}
	t.mu.Lock()
	_, held := t.calls[c.id]
	t.forget(c)
	t.mu.Unlock()
	if held {
		t.cfg.Observer.CallReleased(c.fnName, false)
	}
	return nil
}

// forget removes c from the table. t.mu must be held.
func (t *Table) forget(c *call) {
	delete(t.calls, c.id)
	if c.requestID != "" && t.byRequest[c.requestID] == c {
		delete(t.byRequest, c.requestID)
	}
}

// List returns a summary of every call held, oldest first.
func (t *Table) List() []rpc.CallSummary {
	t.mu.Lock()
	calls := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		calls = append(calls, c)
	}
	t.mu.Unlock()
	out := make([]rpc.CallSummary, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.summary())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// WarmIdle reports how many warm function processes wait for a call.
func (t *Table) WarmIdle() int {
	if t.pool == nil {
		return 0
	}
	return len(t.pool.idle)
}

// Counts reports how many calls are running and how many finished ones are
// held.
func (t *Table) Counts() (running, finished int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Starts still spawning count as running but are not in t.calls yet.
	return t.running, len(t.calls) - (t.running - t.spawning)
}

// Expire drops the finished calls that finished more than the retention
// period before now, and returns how many it dropped. noded's janitor
// calls it periodically; nothing is dropped earlier.
func (t *Table) Expire(now time.Time) int {
	cutoff := now.Add(-t.cfg.Retention)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.calls {
		if fin, ok := c.finishedAt(); ok && !fin.After(cutoff) {
			t.forget(c)
			t.cfg.Observer.CallReleased(c.fnName, true)
			n++
		}
	}
	return n
}

// Shutdown refuses new calls, stops every running one (SIGTERM to each
// process group, SIGKILL after the grace period), and returns once every
// function process is reaped, or with ctx's error if ctx ends first.
func (t *Table) Shutdown(ctx context.Context) error {
	if t.pool != nil {
		t.pool.close()
	}
	t.mu.Lock()
	t.closed = true
	calls := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		calls = append(calls, c)
	}
	t.mu.Unlock()
	for _, c := range calls {
		c.stop(rpc.KindCancelled, "noded is shutting down", t.cfg.Grace)
	}
	reaped := make(chan struct{})
	go func() {
		t.supervisors.Wait()
		close(reaped)
	}()
	select {
	case <-reaped:
		if t.cgroups != nil {
			if err := t.cgroups.close(); err != nil {
				t.cfg.Logger.Warn("removing the calls' cgroup directory", "err", err)
			}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookup finds a call by ID, telling an ID of an earlier daemon (lost)
// from one this daemon never issued or no longer holds (unknown_call).
func (t *Table) lookup(id string) (*call, error) {
	t.mu.Lock()
	c, ok := t.calls[id]
	t.mu.Unlock()
	if ok {
		return c, nil
	}
	parsed, err := rpc.ParseCallID(id)
	if err != nil {
		return nil, err
	}
	// IDs carry microseconds: compare at that precision.
	if parsed.Time.Before(t.started.Truncate(time.Microsecond)) {
		return nil, rpc.Errorf(rpc.KindLost, "call %s was started by an earlier noded (before %s); its result is lost", id, t.started.Format(time.RFC3339Nano))
	}
	return nil, rpc.Errorf(rpc.KindUnknownCall, "no call %s on this node (never started here, released, or expired after the retention period)", id)
}

func (t *Table) capWait(seconds float64) time.Duration {
	return min(rpc.Duration(seconds), t.cfg.MaxWait)
}

// wait blocks until c finishes, timeout passes or ctx ends; with wakeOnLog
// it also returns as soon as c has log lines past offset.
func (t *Table) wait(ctx context.Context, c *call, timeout time.Duration, offset int, wakeOnLog bool) *rpc.Call {
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
	loop:
		for {
			var logged <-chan struct{}
			if wakeOnLog {
				var has bool
				if logged, has = c.logWaiter(offset); has {
					break
				}
			}
			select {
			case <-c.done:
				break loop
			case <-timer.C:
				break loop
			case <-ctx.Done():
				break loop
			case <-logged:
			}
		}
	}
	return c.record(offset)
}
