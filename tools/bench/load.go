// Package bench is the load generator behind noderpc bench: it loads
// nodes with calls through package master and measures them beside their
// floors, taken in the same run on the same machine (a bare spawn of the
// function process, a bare HTTP round trip), and it measures a node's
// memory per running call and per open wait. It reports as values that
// print for a person or encode as JSON; flags, exit statuses and the
// choice of output stay with the command line.
package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// loadSpec bounds one phase of a benchmark. A phase always ends by
// itself: after count operations when count is above 0, and in any case
// once duration has passed (operations in flight then finish, bounded by
// their own timeouts) or ctx has ended.
type loadSpec struct {
	concurrency int
	count       int
	duration    time.Duration
	// rate, when above 0, paces the operations of all workers together
	// to that many per second.
	rate float64
}

// op is one timed operation of a phase: operation number i, its latency,
// and its error. An op measures its own latency, so that work it does
// after the measured part (the line floor's reap of its process) is left out.
type op func(i int) (time.Duration, error)

// Phase is what one phase of a benchmark measured: the calls of a run,
// or the runs of a floor.
type Phase struct {
	// Calls is how many operations ended; Calls = Successes + the sum of
	// Errors.
	Calls     int            `json:"calls"`
	Successes int            `json:"successes"`
	Errors    map[string]int `json:"errors"`
	// FirstError is the message of the first failure, to say what went
	// wrong beside the counts.
	FirstError string  `json:"first_error,omitempty"`
	Elapsed    Seconds `json:"elapsed_seconds"`
	// Throughput is operations ended per second of the phase.
	Throughput float64 `json:"throughput_per_second"`
	// Latency is over successful operations only.
	Latency Latency `json:"latency_seconds"`
	// CPUPerCall is this process's user+system CPU time (getrusage
	// RUSAGE_SELF) over the phase, divided by Calls.
	CPUPerCall Seconds `json:"client_cpu_seconds_per_call"`
}

// Latency holds the percentiles of a phase's latencies.
type Latency struct {
	P50  Seconds `json:"p50"`
	P90  Seconds `json:"p90"`
	P99  Seconds `json:"p99"`
	Max  Seconds `json:"max"`
	Mean Seconds `json:"mean"`
}

// Seconds is a duration that encodes as a number of seconds, as every
// duration on the wire does.
type Seconds time.Duration

// MarshalJSON writes s as a JSON number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'g', -1, 64), nil
}

// samples are the raw measurements of one or more rounds of a phase.
type samples struct {
	ok       []time.Duration // latencies of the successful operations
	errs     map[string]int
	firstErr string
	calls    int
	elapsed  time.Duration
	cpu      time.Duration
}

// add merges the samples of another round into s.
func (s *samples) add(o samples) {
	s.ok = append(s.ok, o.ok...)
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	for k, n := range o.errs {
		s.errs[k] += n
	}
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
	s.calls += o.calls
	s.elapsed += o.elapsed
	s.cpu += o.cpu
}

// phase summarises the samples.
func (s samples) phase() Phase {
	p := Phase{Calls: s.calls, Successes: len(s.ok), Errors: s.errs, FirstError: s.firstErr, Elapsed: Seconds(s.elapsed)}
	if p.Errors == nil {
		p.Errors = map[string]int{}
	}
	if s.calls > 0 {
		p.Throughput = float64(s.calls) / s.elapsed.Seconds()
		p.CPUPerCall = Seconds(s.cpu / time.Duration(s.calls))
	}
	p.Latency = percentiles(s.ok)
	return p
}

// phasePtr is phase, for a report's optional phases.
func (s samples) phasePtr() *Phase {
	p := s.phase()
	return &p
}

// split divides the bounds of s between rounds: round r of n gets its
// share of the count and of the duration.
func (s loadSpec) split(r, n int) loadSpec {
	if s.count > 0 {
		s.count = s.count/n + btoi(r < s.count%n)
	}
	s.duration /= time.Duration(n)
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runLoad runs do from s.concurrency workers within the bounds of s.
func runLoad(ctx context.Context, s loadSpec, do op) samples {
	type result struct {
		took time.Duration
		err  error
	}
	var next atomic.Int64
	results := make([][]result, s.concurrency) // per worker: no lock on the hot path
	cpu0 := cpuTime()
	begin := time.Now()
	end := begin.Add(s.duration)
	var wg sync.WaitGroup
	for w := range s.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if s.count > 0 && i >= s.count {
					return
				}
				if s.rate > 0 {
					at := begin.Add(time.Duration(float64(i) / s.rate * float64(time.Second)))
					if !at.Before(end) || !sleepUntil(ctx, at) {
						return
					}
				}
				if ctx.Err() != nil || !time.Now().Before(end) {
					return
				}
				took, err := do(i)
				results[w] = append(results[w], result{took, err})
			}
		})
	}
	wg.Wait()
	out := samples{errs: map[string]int{}, elapsed: time.Since(begin), cpu: cpuTime() - cpu0}
	for _, rs := range results {
		for _, r := range rs {
			out.calls++
			if r.err != nil {
				out.errs[errorKind(r.err)]++
				if out.firstErr == "" {
					out.firstErr = r.err.Error()
				}
				continue
			}
			out.ok = append(out.ok, r.took)
		}
	}
	return out
}

// sleepUntil waits until t; it returns false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// percentiles sorts ds and returns their nearest-rank percentiles.
func percentiles(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	rank := func(p float64) Seconds {
		// Nearest rank: the smallest value with at least p of the values
		// at or below it.
		i := int(math.Ceil(float64(len(ds))*p)) - 1
		return Seconds(ds[max(0, min(i, len(ds)-1))])
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{
		P50:  rank(0.50),
		P90:  rank(0.90),
		P99:  rank(0.99),
		Max:  Seconds(ds[len(ds)-1]),
		Mean: Seconds(sum / time.Duration(len(ds))),
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errorKind names the kind of a failed call in the report: its rpc kind
// (unreachable included), "interrupted" when the run was stopped, or
// "other".
func errorKind(err error) string {
	if k := rpc.KindOf(err); k != "" {
		return string(k)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "interrupted"
	}
	return "other"
}
