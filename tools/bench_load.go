package tools

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
// after the measured part (a release) is left out.
type op func(i int) (time.Duration, error)

// phase is what one phase of a benchmark measured.
type phase struct {
	// Calls is how many operations ended; Calls = Successes + the sum of
	// Errors.
	Calls     int            `json:"calls"`
	Successes int            `json:"successes"`
	Errors    map[string]int `json:"errors"`
	// FirstError is the message of the first failure, to say what went
	// wrong beside the counts.
	FirstError string  `json:"first_error,omitempty"`
	Elapsed    seconds `json:"elapsed_seconds"`
	// Throughput is operations ended per second of the phase.
	Throughput float64 `json:"throughput_per_second"`
	// Latency is over successful operations only.
	Latency latency `json:"latency_seconds"`
	// CPUPerCall is this process's user+system CPU time (getrusage
	// RUSAGE_SELF) over the phase, divided by Calls.
	CPUPerCall seconds `json:"client_cpu_seconds_per_call"`
}

// latency holds the percentiles of a phase's latencies.
type latency struct {
	P50  seconds `json:"p50"`
	P90  seconds `json:"p90"`
	P99  seconds `json:"p99"`
	Max  seconds `json:"max"`
	Mean seconds `json:"mean"`
}

// seconds is a duration that encodes as a number of seconds, as every
// duration on the wire does.
type seconds time.Duration

func (s seconds) MarshalJSON() ([]byte, error) {
	return []byte(formatFloat(time.Duration(s).Seconds())), nil
}

// runLoad runs do from s.concurrency workers within the bounds of s.
func runLoad(ctx context.Context, s loadSpec, do op) phase {
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
	elapsed := time.Since(begin)
	cpu := cpuTime() - cpu0

	p := phase{Errors: map[string]int{}, Elapsed: seconds(elapsed)}
	var ok []time.Duration
	for _, rs := range results {
		for _, r := range rs {
			p.Calls++
			if r.err != nil {
				p.Errors[errorKind(r.err)]++
				if p.FirstError == "" {
					p.FirstError = r.err.Error()
				}
				continue
			}
			p.Successes++
			ok = append(ok, r.took)
		}
	}
	if p.Calls > 0 {
		p.Throughput = float64(p.Calls) / elapsed.Seconds()
		p.CPUPerCall = seconds(cpu / time.Duration(p.Calls))
	}
	p.Latency = percentiles(ok)
	return p
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
func percentiles(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	rank := func(p float64) seconds {
		// Nearest rank: the smallest value with at least p of the values
		// at or below it.
		i := int(math.Ceil(float64(len(ds))*p)) - 1
		return seconds(ds[max(0, min(i, len(ds)-1))])
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return latency{
		P50:  rank(0.50),
		P90:  rank(0.90),
		P99:  rank(0.99),
		Max:  seconds(ds[len(ds)-1]),
		Mean: seconds(sum / time.Duration(len(ds))),
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
