package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// Report is the outcome of Run: Print writes it for a person, and it
// encodes as the JSON object of noderpc --json bench.
type Report struct {
	Nodes       []string        `json:"nodes"`
	Fn          string          `json:"fn"`
	Args        json.RawMessage `json:"args"`
	Concurrency int             `json:"concurrency"`
	Rate        float64         `json:"rate,omitempty"`
	Rounds      int             `json:"rounds"`
	// Connect is the GET /Version to every node that opened the
	// connections before the first round; nil unless Load.Connect.
	Connect *Phase `json:"connect,omitempty"`
	// DialFloor is the floor of Connect: as many bare TCP connections,
	// each with one GET /Version written by hand; nil when not run,
	// DialFloorMissing then says why if it was asked for.
	DialFloor        *Phase `json:"dial_floor,omitempty"`
	DialFloorMissing string `json:"dial_floor_missing,omitempty"`
	// Run is the load itself: calls from start to result.
	Run Phase `json:"run"`
	// HTTPFloor is GET /Version at the same concurrency; nil without
	// floors.
	HTTPFloor *Phase `json:"http_floor,omitempty"`
	// SpawnFloor is the bare spawn and wait of the Go function process
	// binary; nil when it was not run, SpawnFloorMissing then says why if
	// it was asked for.
	SpawnFloor        *Phase `json:"spawn_floor,omitempty"`
	SpawnFloorBin     string `json:"spawn_floor_bin,omitempty"`
	SpawnFloorMissing string `json:"spawn_floor_missing,omitempty"`
	// MinSpawnFloor is the same of the minimal Go process (noderpc-floor)
	// and LineFloor one line through an idle, started one; nil when not
	// run, MinFloorMissing then says why if they were asked for.
	MinSpawnFloor   *Phase `json:"min_spawn_floor,omitempty"`
	LineFloor       *Phase `json:"line_floor,omitempty"`
	MinFloorBin     string `json:"min_floor_bin,omitempty"`
	MinFloorMissing string `json:"min_floor_missing,omitempty"`
	// Ratios are the run's figures over their floors, absent without
	// floors (see Ratios).
	Ratios *Ratios `json:"ratios,omitempty"`
}

// Ratios are the run's figures as multiples of their floors. The spawn
// floor they take is the minimal process's when it was measured, else
// the function binary's.
type Ratios struct {
	// P50 to Max are the latencies over the cold floor, the spawn floor
	// plus the HTTP floor at the same percentile.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	// WarmP50 to WarmP99 are the latencies over the warm floor, the line
	// floor plus the HTTP floor; absent without the line floor.
	WarmP50 float64 `json:"warm_p50,omitempty"`
	WarmP90 float64 `json:"warm_p90,omitempty"`
	WarmP99 float64 `json:"warm_p99,omitempty"`
	// Throughput is the run's over the spawn floor's.
	Throughput float64 `json:"throughput,omitempty"`
	// ConnectCPU is the client CPU per call of Connect over the dial
	// floor's: what a first contact through the client costs beyond a
	// bare connection and request; absent without both.
	ConnectCPU float64 `json:"connect_cpu,omitempty"`
	// FunctionSpawn is the function binary's spawn floor over the
	// minimal process's, at the median: what the function process's own
	// start adds; absent without both.
	FunctionSpawn float64 `json:"function_spawn,omitempty"`
}

// coldSpawn is the spawn floor the ratios take.
func (r *Report) coldSpawn() *Phase {
	if r.MinSpawnFloor != nil {
		return r.MinSpawnFloor
	}
	return r.SpawnFloor
}

// ratios fills r.Ratios from the floors that were measured.
func (r *Report) ratios() {
	spawn := r.coldSpawn()
	if r.HTTPFloor == nil && spawn == nil && r.DialFloor == nil {
		return
	}
	lat := r.Run.Latency
	cold := sumLatency(spawn, r.HTTPFloor)
	r.Ratios = &Ratios{
		P50: div(lat.P50, cold.P50),
		P90: div(lat.P90, cold.P90),
		P99: div(lat.P99, cold.P99),
		Max: div(lat.Max, cold.Max),
	}
	if r.LineFloor != nil {
		warm := sumLatency(r.LineFloor, r.HTTPFloor)
		r.Ratios.WarmP50, r.Ratios.WarmP90, r.Ratios.WarmP99 = div(lat.P50, warm.P50), div(lat.P90, warm.P90), div(lat.P99, warm.P99)
	}
	if spawn != nil && spawn.Throughput > 0 {
		r.Ratios.Throughput = r.Run.Throughput / spawn.Throughput
	}
	if r.Connect != nil && r.DialFloor != nil {
		r.Ratios.ConnectCPU = div(r.Connect.CPUPerCall, r.DialFloor.CPUPerCall)
	}
	if r.SpawnFloor != nil && r.MinSpawnFloor != nil {
		r.Ratios.FunctionSpawn = div(r.SpawnFloor.Latency.P50, r.MinSpawnFloor.Latency.P50)
	}
}

// div is a/b, 0 when b is.
func div(a, b Seconds) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// sumLatency is the sum of the phases' latencies, percentile by
// percentile; a nil phase counts for nothing.
func sumLatency(phases ...*Phase) Latency {
	var l Latency
	for _, f := range phases {
		if f != nil {
			l.P50 += f.Latency.P50
			l.P90 += f.Latency.P90
			l.P99 += f.Latency.P99
			l.Max += f.Latency.Max
			l.Mean += f.Latency.Mean
		}
	}
	return l
}

// OK reports whether the run made calls and every one succeeded.
func (r *Report) OK() bool { return r.Run.Calls > 0 && r.Run.Calls == r.Run.Successes }

// Print writes the report for a person.
func (r *Report) Print(w io.Writer) {
	run := r.Run
	fmt.Fprintf(w, "bench %s %s on %s, concurrency %d", r.Fn, rpc.Clip(string(r.Args), 60), nodeList(r.Nodes), r.Concurrency)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", paced at %g calls/s", r.Rate)
	}
	fmt.Fprintf(w, ": %d calls in %s, %d succeeded\n", run.Calls, fmtDur(run.Elapsed), run.Successes)

	spawn, spawnName := r.coldSpawn(), "spawn floor"
	if spawn != nil && spawn == r.MinSpawnFloor {
		spawnName = "min spawn floor"
	}
	fmt.Fprintf(w, "  throughput %.1f calls/s", run.Throughput)
	if r.Ratios != nil && r.Ratios.Throughput > 0 {
		fmt.Fprintf(w, " = %.2f x %s %.1f/s", r.Ratios.Throughput, spawnName, spawn.Throughput)
	}
	fmt.Fprintln(w)
	for _, q := range []struct {
		name       string
		at         func(Latency) Seconds
		cold, warm float64
	}{
		{"p50", func(l Latency) Seconds { return l.P50 }, r.ratio(func(b *Ratios) float64 { return b.P50 }), r.ratio(func(b *Ratios) float64 { return b.WarmP50 })},
		{"p90", func(l Latency) Seconds { return l.P90 }, r.ratio(func(b *Ratios) float64 { return b.P90 }), r.ratio(func(b *Ratios) float64 { return b.WarmP90 })},
		{"p99", func(l Latency) Seconds { return l.P99 }, r.ratio(func(b *Ratios) float64 { return b.P99 }), r.ratio(func(b *Ratios) float64 { return b.WarmP99 })},
		{"max", func(l Latency) Seconds { return l.Max }, r.ratio(func(b *Ratios) float64 { return b.Max }), 0},
	} {
		fmt.Fprintf(w, "  %s %s", q.name, fmtDur(q.at(run.Latency)))
		if r.Ratios != nil {
			var parts []string
			if spawn != nil {
				parts = append(parts, spawnName+" "+fmtDur(q.at(spawn.Latency)))
			}
			if r.HTTPFloor != nil {
				parts = append(parts, "http floor "+fmtDur(q.at(r.HTTPFloor.Latency)))
			}
			fmt.Fprintf(w, " = %.2f x (%s)", q.cold, strings.Join(parts, " + "))
			if q.warm > 0 {
				fmt.Fprintf(w, ", %.2f x (line floor %s + http floor %s)", q.warm, fmtDur(q.at(r.LineFloor.Latency)), fmtDur(q.at(r.HTTPFloor.Latency)))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  errors: %s\n", errorSummary(run))
	fmt.Fprintf(w, "  client CPU %s per call\n", fmtDur(run.CPUPerCall))
	if f := r.SpawnFloor; f != nil {
		fmt.Fprintf(w, "spawn floor: %d runs of %s in %s, %.1f/s, errors: %s\n", f.Calls, r.SpawnFloorBin, fmtDur(f.Elapsed), f.Throughput, errorSummary(*f))
	} else if r.SpawnFloorMissing != "" {
		fmt.Fprintf(w, "spawn floor: not measured: %s\n", r.SpawnFloorMissing)
	}
	if f := r.MinSpawnFloor; f != nil {
		fmt.Fprintf(w, "min spawn floor: %d runs of %s in %s, %.1f/s, p50 %s, errors: %s\n", f.Calls, r.MinFloorBin, fmtDur(f.Elapsed), f.Throughput, fmtDur(f.Latency.P50), errorSummary(*f))
		l := r.LineFloor
		fmt.Fprintf(w, "line floor: %d lines through an idle %s, p50 %s p99 %s, errors: %s\n", l.Calls, r.MinFloorBin, fmtDur(l.Latency.P50), fmtDur(l.Latency.P99), errorSummary(*l))
		if r.Ratios != nil && r.Ratios.FunctionSpawn > 0 {
			fmt.Fprintf(w, "function process spawn p50 = %.2f x min spawn floor\n", r.Ratios.FunctionSpawn)
		}
	} else if r.MinFloorMissing != "" {
		fmt.Fprintf(w, "min spawn and line floors: not measured: %s\n", r.MinFloorMissing)
	}
	if f := r.Connect; f != nil {
		fmt.Fprintf(w, "connect: %d GET /Version opened the connections before the rounds in %s, p50 %s p99 %s, client CPU %s per call",
			f.Calls, fmtDur(f.Elapsed), fmtDur(f.Latency.P50), fmtDur(f.Latency.P99), fmtDur(f.CPUPerCall))
		if x := r.ratio(func(b *Ratios) float64 { return b.ConnectCPU }); x > 0 {
			fmt.Fprintf(w, " = %.2f x dial floor's", x)
		}
		fmt.Fprintf(w, ", errors: %s\n", errorSummary(*f))
	}
	if f := r.DialFloor; f != nil {
		fmt.Fprintf(w, "dial floor: %d bare connections, each with one GET /Version, in %s, p50 %s p99 %s, client CPU %s per call, errors: %s\n",
			f.Calls, fmtDur(f.Elapsed), fmtDur(f.Latency.P50), fmtDur(f.Latency.P99), fmtDur(f.CPUPerCall), errorSummary(*f))
	} else if r.DialFloorMissing != "" {
		fmt.Fprintf(w, "dial floor: not measured: %s\n", r.DialFloorMissing)
	}
	if f := r.HTTPFloor; f != nil {
		fmt.Fprintf(w, "http floor: %d GET /Version in %s, %.1f/s, p50 %s p99 %s, client CPU %s per call, errors: %s\n",
			f.Calls, fmtDur(f.Elapsed), f.Throughput, fmtDur(f.Latency.P50), fmtDur(f.Latency.P99), fmtDur(f.CPUPerCall), errorSummary(*f))
	}
}

// ratio is one of r's ratios, 0 without floors.
func (r *Report) ratio(of func(*Ratios) float64) float64 {
	if r.Ratios == nil {
		return 0
	}
	return of(r.Ratios)
}

// errorSummary is "none", or each kind with its count, most frequent
// first, and the first error's message.
func errorSummary(p Phase) string {
	if len(p.Errors) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(p.Errors))
	for k := range p.Errors {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if d := p.Errors[b] - p.Errors[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, p.Errors[k]))
	}
	return strings.Join(parts, ", ") + " (first: " + rpc.Clip(p.FirstError, 200) + ")"
}

// fmtDur rounds a duration to three significant digits or so.
func fmtDur(s Seconds) string {
	d := time.Duration(s)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(100 * time.Nanosecond).String()
}

// nodeList shortens a long list of nodes for a heading.
func nodeList(nodes []string) string {
	if len(nodes) <= 3 {
		return strings.Join(nodes, " ")
	}
	return fmt.Sprintf("%s ... %s (%d nodes)", nodes[0], nodes[len(nodes)-1], len(nodes))
}
