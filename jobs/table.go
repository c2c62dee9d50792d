// Package jobs is noded's table of function calls.
//
// Each call is one function process, supervised from start to reap: its
// stdout is read through a size limit for the result, its stderr line by
// line into a bounded log tail, and its process group is killed on cancel,
// abort and shutdown. Each call is an explicit state machine (see
// state.go); waiting on a call is event-driven, never a polling loop.
//
// The table knows functions only as a Spec its Resolver returns: which
// program to start, and which of the two child protocols it speaks
// (framed for Go function processes, raw for executables). It takes
// domain values; checking the wire's requests is the server's job.
package jobs

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

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
	// contain says whether the kernel lately refused to start a process
	// in a call's cgroup; calls then use process groups only for a while.
	contain cgroupState
	// strict is set by ContainCgroup: a call that cannot have a cgroup
	// of its own fails instead of falling back to its process group.
	strict bool
	// startProcess starts one function process; spawn, but for tests
	// that need a real error of the kernel at a moment of their choice.
	startProcess func(spec Spec, cg *cgroup, tag string) (*process, error)
}

// New returns an empty table. Its IDs carry this process's PID and the
// time it was made: an ID with an earlier time is of an earlier daemon.
// It kills nothing (a daemon calls KillOrphans first), and fails only on
// an unknown containment, or when cgroup containment was demanded and is
// unavailable.
func New(cfg Config) (*Table, error) {
	cfg.setDefaults()
	containment, err := ParseContainment(string(cfg.Containment))
	if err != nil {
		return nil, err
	}
	tag, err := daemonTag()
	if err != nil {
		return nil, err
	}
	t := &Table{
		cfg:       cfg,
		pid:       os.Getpid(),
		started:   cfg.Now(),
		calls:     make(map[string]*call),
		byRequest: make(map[string]*call),
		pending:   make(map[string]chan struct{}),
		tag:       tag,

		startProcess: spawn,
	}
	if containment != ContainProcessGroup {
		cg, err := newCgroups(tag)
		if err != nil {
			if containment == ContainCgroup {
				return nil, fmt.Errorf("cgroup containment: %w", err)
			}
			cfg.Logger.Info("calls are contained by process groups only: cgroups are not usable here", "err", err)
		}
		t.cgroups = cg
		t.strict = containment == ContainCgroup
	}
	if cfg.Warm > 0 {
		t.pool = newPool(cfg.WarmSpec, cfg.Warm, t.spawn, cfg.Logger)
	}
	return t, nil
}

// Containment reports how calls are contained now: cgroup, or
// process-group where cgroups are unavailable or the kernel lately
// refused one (they are tried again after a back-off).
func (t *Table) Containment() Containment {
	if t.cgroups != nil && !t.contain.isRefused() {
		return ContainCgroup
	}
	return ContainProcessGroup
}

// Started is when the table was made; IDs from before it are lost.
func (t *Table) Started() time.Time { return t.started }

// WaitOptions is what a wait asks for.
type WaitOptions struct {
	// Timeout is how long Wait waits for the call to finish, capped at
	// MaxWait; 0 answers at once.
	Timeout time.Duration
	// LogOffset is the first log line the answer carries, >= 0.
	LogOffset int
	// WakeOnLog also ends the wait as soon as the call has log lines past
	// LogOffset, so a client can show them live.
	WakeOnLog bool
}

// Wait waits up to o.Timeout (capped at MaxWait) for the call to finish
// and returns its record with the log lines from o.LogOffset on.
func (t *Table) Wait(ctx context.Context, id string, o WaitOptions) (*rpc.Call, error) {
	c, err := t.lookup(id)
	if err != nil {
		return nil, err
	}
	return t.wait(ctx, c, min(o.Timeout, t.cfg.MaxWait), o.LogOffset, o.WakeOnLog), nil
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
