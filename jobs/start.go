package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// StartOptions is what a start asks for. noded builds it from a
// StartFunction request it has validated.
type StartOptions struct {
	// Fn names the function; the Resolver says how to run it.
	Fn string
	// Args are the call's fn_args, handed to the function unchanged;
	// nil is JSON null.
	Args json.RawMessage
	// Timeout is how long Start waits for the call to finish, capped at
	// MaxWait; 0 answers at once with the running call.
	Timeout time.Duration
	// AbortAfter, when above 0, stops the call once it has run that
	// long; it then ends aborted.
	AbortAfter time.Duration
	// RequestID, when set, makes the start idempotent: a start with a
	// RequestID the table holds starts nothing and waits on that call.
	RequestID string
	// LogOffset is the first log line the answer carries, >= 0.
	LogOffset int
	// WakeOnLog also ends the wait as soon as the call has log lines
	// past LogOffset, as in WaitOptions.
	WakeOnLog bool
}

// Start runs o.Fn in a new process and waits up to o.Timeout (capped at
// MaxWait) for it to finish. A start with a RequestID that the table
// already holds starts nothing and waits on the first call instead.
func (t *Table) Start(ctx context.Context, o StartOptions) (*rpc.Call, error) {
	spec, err := t.cfg.Resolver.Resolve(o.Fn)
	if err != nil {
		t.cfg.Observer.CallRejected(o.Fn, rpc.KindOf(err))
		return nil, err
	}
	timeout := min(o.Timeout, t.cfg.MaxWait)
	first, err := t.admit(ctx, o)
	if err != nil {
		return nil, err
	}
	if first != nil {
		return t.wait(ctx, first, timeout, o.LogOffset, o.WakeOnLog), nil
	}

	c, fed, err := t.launch(spec, o)

	t.mu.Lock()
	t.spawning--
	if o.RequestID != "" {
		close(t.pending[o.RequestID])
		delete(t.pending, o.RequestID)
	}
	if err != nil {
		t.running--
		t.mu.Unlock()
		t.supervisors.Done()
		t.cfg.Observer.CallRejected(o.Fn, rpc.KindOf(err))
		return nil, err
	}
	t.calls[c.id] = c
	if o.RequestID != "" {
		t.byRequest[o.RequestID] = c
	}
	closed := t.closed
	t.mu.Unlock()

	go t.supervise(c, o.Args, fed)
	if closed {
		// Shutdown began while this call was spawning and did not see it.
		c.stop(rpc.KindCancelled, "noded is shutting down", t.cfg.Grace)
	}
	return t.wait(ctx, c, timeout, o.LogOffset, o.WakeOnLog), nil
}

// admit decides, under the table lock, whether a start may spawn. It
// returns the call of an earlier start with the same RequestID, which the
// start then waits on; or reserves a slot (running, spawning, a
// supervisor, and the pending RequestID) that the caller must settle; or
// refuses the start.
func (t *Table) admit(ctx context.Context, o StartOptions) (first *call, err error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			t.cfg.Observer.CallRejected(o.Fn, rpc.KindShuttingDown)
			return nil, rpc.Errorf(rpc.KindShuttingDown, "noded is shutting down and starts no new calls")
		}
		if o.RequestID != "" {
			if c, ok := t.byRequest[o.RequestID]; ok {
				t.mu.Unlock()
				if c.fnName != o.Fn {
					return nil, rpc.Errorf(rpc.KindBadRequest, "request_id %q was used for a call of %q, not %q", o.RequestID, c.fnName, o.Fn)
				}
				return c, nil
			}
			if ch, ok := t.pending[o.RequestID]; ok {
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
			t.cfg.Observer.CallRejected(o.Fn, rpc.KindBusy)
			return nil, rpc.Errorf(rpc.KindBusy, "%d calls are running, the limit of this node", t.cfg.MaxRunning)
		}
		t.running++
		t.spawning++
		t.supervisors.Add(1)
		if o.RequestID != "" {
			t.pending[o.RequestID] = make(chan struct{})
		}
		t.mu.Unlock()
		return nil, nil
	}
}

// MaxInlineFeed bounds the arguments of a request launch hands to the
// process itself, ahead of a new process's hello (see launch); a larger
// one goes in after the hello, from the supervisor. With its frame (a call ID and a function name of at
// most 255 bytes) such a request fits in PIPE_BUF, 4 KiB, the least an
// empty pipe holds (a new pipe of a user over the kernel's pipe quota
// gets one page): the write never waits for the process to read, so a
// process that stopped reading cannot hold the start's goroutine.
const MaxInlineFeed = 3 << 10

// launch spawns the function process, warm if the pool has one, and
// builds its call. The process gets its request here, in the caller's
// goroutine, unless it is large (fed is then nil and the supervisor
// feeds it): the process works from this moment. A request fed by the
// supervisor waited for that goroutine to be scheduled, on this virtual
// machine tens of microseconds when another thread had to wake for it;
// a new Go process waited that long after its hello, its runtime's
// monitor thread waking every 20 µs meanwhile.
//
// A new process gets its request ahead of its hello, which the
// supervisor reads and checks before the result. The hello still proves
// the process speaks noded's protocol, but no longer before the request
// is in its stdin: the function binary is checked when noded starts and
// pinned open (functions.OpenBinary), noded's own binary is the one
// running, so a process of another protocol is one whose binary was
// rewritten in place since. Its call fails with protocol_error, as
// before, and the process is killed, though it may have begun to run the
// function.
func (t *Table) launch(spec Spec, o StartOptions) (c *call, fed *fedRequest, err error) {
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
			return nil, nil, spawnError(o.Fn, spec.Path, err)
		}
	}
	t.cfg.Observer.CallStarted(o.Fn, time.Since(before))
	now := t.cfg.Now()
	c = &call{
		id:        rpc.NewCallID(t.pid, p.pid, now).String(),
		fnName:    o.Fn,
		requestID: o.RequestID,
		started:   now,
		proc:      p,
		done:      make(chan struct{}),
		reaped:    make(chan struct{}),
		state:     rpc.StateRunning,
		log:       logTail{max: t.cfg.MaxLogLines},
	}
	if len(o.Args) <= MaxInlineFeed {
		fed = &fedRequest{err: p.proto.send(c, o.Args)}
	}
	if warm {
		t.pool.replace(c.reaped)
	}
	if d := o.AbortAfter; d > 0 {
		c.abortTimer = time.AfterFunc(d, func() {
			c.stop(rpc.KindAborted, "ran longer than abort_after "+d.String(), t.cfg.Grace)
		})
	}
	t.cfg.Logger.Info("call started", "call_id", c.id, "fn", c.fnName, "request_id", c.requestID, "warm", warm)
	return c, fed, nil
}

// spawn starts a function process, in a cgroup of its own when the table
// has cgroups and the kernel has not lately refused one. A cgroup that
// cannot be made falls back to the process group for that call rather
// than failing it. An error that says the kernel refused the cgroup
// itself is retried without one; if that works, calls are contained by
// process group until the back-off ends (see cgroupState). Any other
// error is the call's. Under ContainCgroup (strict) there is no fallback:
// the operator asked that no call run outside a cgroup, so one that
// cannot have its own fails with ErrNoCgroup.
func (t *Table) spawn(spec Spec) (*process, error) {
	var cg *cgroup
	if t.cgroups != nil && (t.strict || t.contain.tryCgroup(t.cfg.Now())) {
		var err error
		if cg, err = t.cgroups.create(); err != nil {
			if t.strict {
				return nil, fmt.Errorf("%w: %w", ErrNoCgroup, err)
			}
			t.cfg.Logger.Warn("starting a call without its own cgroup", "fn", spec.Name, "err", err)
		}
	}
	p, err := t.startProcess(spec, cg, t.tag)
	switch {
	case err == nil && cg != nil:
		if t.contain.accept() {
			t.cfg.Logger.Info("the kernel starts calls in their own cgroup again; containing them by cgroup", "fn", spec.Name)
		}
		return p, nil
	case err == nil:
		return p, nil
	case cg == nil:
		return nil, err
	}
	if cg.reused && cg.removed() {
		// An idle cgroup removed while noded held it (an operator
		// cleaning up): clone refuses it with ENOENT, which would read
		// as the program missing. The other idle ones are likely gone
		// with it; the start is tried again in a new cgroup.
		cg.remove()
		t.cgroups.dropIdle()
		t.cfg.Logger.Warn("an idle call cgroup was removed by another program; starting the call in a new one", "cgroup", cg.path)
		return t.spawn(spec)
	}
	cg.remove()
	if !refusesCgroup(err) {
		return nil, err
	}
	if t.strict {
		return nil, fmt.Errorf("%w: the kernel refused to start the process in it: %w", ErrNoCgroup, err)
	}
	p, err2 := t.startProcess(spec, nil, t.tag)
	if err2 != nil {
		return nil, err2
	}
	retry := t.contain.refuse(t.cfg.Now())
	t.cfg.Logger.Warn("the kernel refuses to start calls in their own cgroup; containing them by process group only until cgroups are tried again",
		"fn", spec.Name, "err", err, "retry_in", retry.String())
	return p, nil
}
