package jobs

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noderpc/noderpc/rpc"
)

// pool keeps function processes started and greeted, blocked on stdin, so
// a call can skip the fork+exec (about 2 ms here) and the runtime start of
// the child. Each process still serves exactly one call: isolation is the
// same as a cold start. Only Go function processes can be pooled: they are
// all the same binary and learn which function to run from the request.
type pool struct {
	spec  Spec
	spawn func(Spec) (*process, error)
	log   *slog.Logger
	delay time.Duration // refillDelay, longer in tests

	idle chan *process // greeted processes, at most the pool's size
	// want holds one token per process the refiller should start.
	want chan refillToken
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// helloTimeout bounds how long a pooled process may take to greet.
const helloTimeout = 10 * time.Second

// newPool starts a pool of n processes of spec.
func newPool(spec Spec, n int, spawn func(Spec) (*process, error), log *slog.Logger) *pool {
	p := &pool{
		spec:  spec,
		spawn: spawn,
		log:   log,
		delay: refillDelay,
		idle:  make(chan *process, n),
		want:  make(chan refillToken, n),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for range n {
		p.want <- refillToken{}
	}
	go p.refill()
	return p
}

// matches reports whether a call of spec can run in one of the pool's
// processes: the same program with the same environment.
func (p *pool) matches(spec Spec) bool {
	return spec.Protocol == ProtocolFramed && spec.Path == p.spec.Path && spec.Arg0 == p.spec.Arg0 && slices.Equal(spec.Env, p.spec.Env)
}

// refillDelay bounds how long the replacement of a process taken waits
// for the end of the call that took it, so that a pool drained by long
// calls still refills.
const refillDelay = 100 * time.Millisecond

// refillToken asks the refiller for a process: once after is closed (the
// call that took the process it replaces has ended and its process is
// reaped) or by has passed. A zero token asks for one at once.
type refillToken struct {
	after <-chan struct{}
	by    time.Time
}

// take returns a greeted process, or nil when the pool is empty; the call
// then spawns cold. The caller hands the call's end to replace.
func (p *pool) take() *process {
	for {
		var proc *process
		select {
		case proc = <-p.idle:
		default:
			return nil
		}
		if proc.exited() {
			// Killed while idle (by an operator, or the OOM killer):
			// reap it and try the next one.
			proc.discard()
			p.log.Warn("warm function process died while idle", "pid", proc.pid)
			p.replace(nil)
			continue
		}
		return proc
	}
}

// replace asks for a process to replace one taken, started once after
// has closed (the call that took it has ended and its process is reaped)
// or p.delay has passed; nil after asks for one at once. A spawn
// competes for the CPU with the call, on a machine of few cores and in
// noded itself (the fork), so it waits until the call is done.
func (p *pool) replace(after <-chan struct{}) {
	tok := refillToken{}
	if after != nil {
		tok = refillToken{after: after, by: time.Now().Add(p.delay)}
	}
	select {
	case p.want <- tok:
	default:
	}
}

// refill starts processes one at a time whenever a token asks for one.
// One at a time keeps refilling from competing with cold starts for the
// CPU when the pool is drained by a burst.
func (p *pool) refill() {
	defer close(p.done)
	retry := time.Duration(0)
	for {
		var tok refillToken
		select {
		case <-p.stop:
			return
		case tok = <-p.want:
		}
		if !p.waitFor(tok) {
			return
		}
		proc, err := p.start()
		if err != nil {
			// Give the token back and wait before trying again, so a
			// broken binary does not turn into a fork loop.
			p.want <- refillToken{}
			retry = min(max(2*retry, 100*time.Millisecond), 10*time.Second)
			p.log.Error("starting a warm function process", "err", err, "retry_in", retry)
			select {
			case <-p.stop:
				return
			case <-time.After(retry):
			}
			continue
		}
		retry = 0
		select {
		case p.idle <- proc:
		case <-p.stop:
			proc.discard()
			return
		}
	}
}

// waitFor waits until tok's call has ended or its time has come, or the
// pool is stopped; it returns false in the last case. The time runs from
// when the token was queued, so that tokens queued together by a burst
// of long calls come due together.
func (p *pool) waitFor(tok refillToken) bool {
	if tok.after == nil {
		return true
	}
	t := time.NewTimer(time.Until(tok.by))
	defer t.Stop()
	select {
	case <-tok.after:
	case <-t.C:
	case <-p.stop:
		return false
	}
	return true
}

// start spawns a process and reads its hello. The process is told it is
// warm (FunctionWarmKey): its call comes later, so it primes its request
// path before its hello, off any call's path.
func (p *pool) start() (*process, error) {
	spec := p.spec
	spec.Env = append(slices.Clip(spec.Env), rpc.FunctionWarmKey+"=1")
	proc, err := p.spawn(spec)
	if err != nil {
		return nil, err
	}
	if err := readHello(proc, helloTimeout); err != nil {
		proc.discard()
		return nil, err
	}
	return proc, nil
}

// close stops refilling and kills every idle process.
func (p *pool) close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		for {
			select {
			case proc := <-p.idle:
				proc.discard()
			default:
				return
			}
		}
	})
}

// exited reports, without reaping it, whether the process has exited.
func (proc *process) exited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, proc.pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// With WNOHANG, a process that has not exited leaves info zero.
	return err != nil || info.Signo != 0
}

// discard kills a process that serves no call and reaps it.
func (proc *process) discard() {
	proc.kill()
	proc.stdin.Close()
	proc.cmd.Wait()
	proc.stdout.Close()
	proc.stderr.Close()
	proc.release()
}
