package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

func TestPercentiles(t *testing.T) {
	ms := func(n int) Seconds { return Seconds(time.Duration(n) * time.Millisecond) }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		// Reversed: percentiles must sort.
		hundred[i] = time.Duration(100-i) * time.Millisecond
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Latency
	}{
		{"none", nil, Latency{}},
		{"one", []time.Duration{7 * time.Millisecond}, Latency{ms(7), ms(7), ms(7), ms(7), ms(7)}},
		{"1..100 ms", hundred, Latency{P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100), Mean: Seconds(50500 * time.Microsecond)}},
	} {
		if got := percentiles(tc.in); got != tc.want {
			t.Errorf("percentiles(%s) = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestRunLoad runs a fake operation that fails one time in three: every
// operation is counted once, as a success or under its error's kind.
func TestRunLoad(t *testing.T) {
	do := func(i int) (time.Duration, error) {
		if i%3 == 2 {
			return time.Millisecond, rpc.Errorf(rpc.KindFunctionFailed, "call %d failed", i)
		}
		return time.Duration(i+1) * time.Millisecond, nil
	}
	s := runLoad(context.Background(), loadSpec{concurrency: 4, count: 30, duration: time.Minute}, do)
	if s.calls != 30 || len(s.ok) != 20 || s.errs["function_failed"] != 10 || len(s.errs) != 1 {
		t.Errorf("runLoad(30 ops, 1 in 3 failing) = %d calls, %d ok, errors %v; want 30, 20, function_failed 10", s.calls, len(s.ok), s.errs)
	}
	if s.firstErr == "" {
		t.Error("runLoad kept no first error")
	}
	p := s.phase()
	if p.Calls != 30 || p.Successes != 20 || p.Latency.Max != Seconds(29*time.Millisecond) || p.Throughput <= 0 {
		t.Errorf("phase() = %+v; want 30 calls, 20 successes, max 29ms and a throughput", p)
	}

	// A run whose context has ended makes no call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s := runLoad(ctx, loadSpec{concurrency: 2, count: 10, duration: time.Minute}, do); s.calls != 0 {
		t.Errorf("runLoad after its context ended made %d calls, want 0", s.calls)
	}
}

func TestSplit(t *testing.T) {
	spec := loadSpec{concurrency: 2, count: 10, duration: 9 * time.Second}
	var counts []int
	total := 0
	for r := range 3 {
		part := spec.split(r, 3)
		counts = append(counts, part.count)
		total += part.count
		if part.duration != 3*time.Second || part.concurrency != 2 {
			t.Errorf("split(%d, 3) of %+v = %+v; want 3s at concurrency 2", r, spec, part)
		}
	}
	if total != 10 || counts[0] != 4 || counts[2] != 3 {
		t.Errorf("split of 10 calls in 3 rounds = %v; want 4 3 3", counts)
	}
	if part := (loadSpec{duration: time.Second}).split(1, 2); part.count != 0 {
		t.Errorf("split of an uncounted spec has count %d, want 0 (bounded by time only)", part.count)
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{rpc.Errorf(rpc.KindUnreachable, "no answer"), "unreachable"},
		{fmt.Errorf("waiting: %w", context.Canceled), "interrupted"},
		{context.DeadlineExceeded, "interrupted"},
		{errors.New("something else"), "other"},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestSecondsJSON(t *testing.T) {
	b, err := json.Marshal(Latency{P50: Seconds(1500 * time.Millisecond), Max: Seconds(2 * time.Second)})
	if want := `{"p50":1.5,"p90":0,"p99":0,"max":2,"mean":0}`; err != nil || string(b) != want {
		t.Errorf("json.Marshal(Latency) = %s, %v; want %s", b, err, want)
	}
}
