package noded

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/rpc"
)

// PathMetrics serves the daemon's metrics in the Prometheus text format.
// It is not a procedure of the protocol, so it lives here and not in rpc.
const PathMetrics = "/metrics"

// Buckets of the histograms, in seconds. Spawning a function process
// takes about a millisecond on an idle node and grows with load and fork
// contention; calls last from milliseconds (echo) to the retention period.
var (
	spawnBuckets    = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// daemonMetrics holds one daemon's metrics. Each daemon has a set of its
// own rather than the library's global one, so daemons run in one process
// (tests) count apart.
//
// The counters and gauges are the library's. The histograms are written
// here with cumulative "le" buckets, the classic Prometheus histogram that
// histogram_quantile() reads: the library's own histograms use "vmrange"
// buckets that only VictoriaMetrics' query language can turn into
// quantiles.
type daemonMetrics struct {
	set *metrics.Set

	spawn    *histogram
	mu       sync.Mutex
	duration map[string]*histogram // by function

	startsInFlight atomic.Int64
	waitsInFlight  atomic.Int64
}

var _ jobs.Observer = (*daemonMetrics)(nil)

func newMetrics() *daemonMetrics {
	m := &daemonMetrics{
		set:      metrics.NewSet(),
		spawn:    newHistogram(spawnBuckets),
		duration: make(map[string]*histogram),
	}
	m.set.NewGauge(fmt.Sprintf(`noded_build_info{version=%s,protocol="%d",goversion=%s}`,
		labelValue(rpc.Version), rpc.ProtocolVersion, labelValue(runtime.Version())), func() float64 { return 1 })
	m.set.NewGauge("noded_start_requests_in_flight", func() float64 { return float64(m.startsInFlight.Load()) })
	m.set.NewGauge("noded_wait_requests_in_flight", func() float64 { return float64(m.waitsInFlight.Load()) })
	// Every reason and state is written from the start, at zero, so
	// that rate() and alerts see a series before its first event.
	for _, k := range []rpc.Kind{rpc.KindBusy, rpc.KindShuttingDown, rpc.KindUnknownFunction, rpc.KindBadRequest, rpc.KindInternal} {
		m.rejected(k)
	}
	m.set.GetOrCreateCounter(`noded_calls_dropped_total{reason="released"}`)
	m.set.GetOrCreateCounter(`noded_calls_dropped_total{reason="expired"}`)
	m.set.RegisterMetricsWriter(m.writeHistograms)
	return m
}

// watch adds the gauges read from the job table at each scrape.
func (m *daemonMetrics) watch(t *jobs.Table, maxRunning int) {
	m.set.NewGauge("noded_calls_running", func() float64 {
		running, _ := t.Counts()
		return float64(running)
	})
	m.set.NewGauge("noded_calls_retained", func() float64 {
		_, finished := t.Counts()
		return float64(finished)
	})
	m.set.NewGauge("noded_calls_running_limit", func() float64 { return float64(maxRunning) })
	m.set.NewGauge("noded_warm_processes_idle", func() float64 { return float64(t.WarmIdle()) })
	started := float64(t.Started().UnixNano()) / 1e9
	m.set.NewGauge("noded_start_time_seconds", func() float64 { return started })
	// One series per mode, 1 for the mode calls start in now: under
	// --containment auto a kernel that refuses cgroups turns calls to
	// process groups, which a grandchild may escape, and an operator
	// should see it before a leaked process does.
	for _, mode := range []jobs.Containment{jobs.ContainCgroup, jobs.ContainProcessGroup} {
		m.set.NewGauge(`noded_containment{mode=`+labelValue(string(mode))+`}`, func() float64 {
			if t.Containment() == mode {
				return 1
			}
			return 0
		})
	}
}

// connectionCounts returns the counters connection admission feeds.
func (m *daemonMetrics) connectionCounts() admissionCounts {
	return admissionCounts{
		refusedPerAddr: m.set.NewCounter(`noded_connections_refused_total{reason="max_conns_per_ip"}`),
		refusedFull:    m.set.NewCounter(`noded_connections_refused_total{reason="max_conns"}`),
		idleClosed:     m.set.NewCounter("noded_connections_idle_closed_total"),
	}
}

// watchConnections adds the gauges of connection admission.
func (m *daemonMetrics) watchConnections(l *admission) {
	m.set.NewGauge("noded_connections_open", func() float64 { return float64(l.open()) })
	m.set.NewGauge("noded_connections_limit", func() float64 { return float64(l.maxTotal) })
}

// CallStarted implements jobs.Observer.
func (m *daemonMetrics) CallStarted(fn string, spawn time.Duration) {
	m.set.GetOrCreateCounter(`noded_calls_started_total{fn=` + labelValue(fn) + `}`).Inc()
	m.spawn.observe(spawn.Seconds())
}

// CallFinished implements jobs.Observer.
func (m *daemonMetrics) CallFinished(fn string, state rpc.State, _ rpc.Kind, d time.Duration) {
	m.set.GetOrCreateCounter(`noded_calls_finished_total{fn=` + labelValue(fn) + `,state=` + labelValue(string(state)) + `}`).Inc()
	m.mu.Lock()
	h := m.duration[fn]
	if h == nil {
		h = newHistogram(durationBuckets)
		m.duration[fn] = h
	}
	m.mu.Unlock()
	h.observe(d.Seconds())
}

// CallRejected implements jobs.Observer. The function name is left out on
// purpose: a refused name may be anything a client sent, and a label of
// it would let clients grow the series without bound.
func (m *daemonMetrics) CallRejected(_ string, reason rpc.Kind) {
	m.rejected(reason).Inc()
}

func (m *daemonMetrics) rejected(reason rpc.Kind) *metrics.Counter {
	return m.set.GetOrCreateCounter(`noded_calls_rejected_total{reason=` + labelValue(string(reason)) + `}`)
}

// CallReleased implements jobs.Observer.
func (m *daemonMetrics) CallReleased(_ string, expired bool) {
	reason := "released"
	if expired {
		reason = "expired"
	}
	m.set.GetOrCreateCounter(`noded_calls_dropped_total{reason="` + reason + `"}`).Inc()
}

// write writes every metric of the daemon, then the Go runtime's and the
// process's (memory, threads, open files), which tell how close a node is
// to its limits, each family with its HELP and TYPE (exposition.go).
func (m *daemonMetrics) write(w io.Writer) {
	var text bytes.Buffer
	m.set.WritePrometheus(&text)
	metrics.WriteProcessMetrics(&text)
	metrics.WriteFDMetrics(&text)
	writeAnnotated(w, text.Bytes())
}

func (m *daemonMetrics) writeHistograms(w io.Writer) {
	m.spawn.write(w, "noded_spawn_seconds", "")

	m.mu.Lock()
	fns := make([]string, 0, len(m.duration))
	for fn := range m.duration {
		fns = append(fns, fn)
	}
	hs := make([]*histogram, len(fns))
	sort.Strings(fns)
	for i, fn := range fns {
		hs[i] = m.duration[fn]
	}
	m.mu.Unlock()
	for i, fn := range fns {
		hs[i].write(w, "noded_call_duration_seconds", "fn="+labelValue(fn))
	}
}

// histogram is a Prometheus histogram with fixed buckets, safe for
// concurrent use without a lock.
type histogram struct {
	bounds  []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64   // float64 bits of the sum
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: le is inclusive
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// write writes the buckets, sum and count; labels are extra labels
// ("k=\"v\"") or empty. The count is the sum of the buckets read, so
// the +Inf bucket and _count always agree.
func (h *histogram) write(w io.Writer, name, labels string) {
	sep := ""
	if labels != "" {
		sep = ","
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.bounds) {
			le = strconv.FormatFloat(h.bounds[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{%s%sle=\"%s\"} %d\n", name, labels, sep, le, cum)
	}
	braced := ""
	if labels != "" {
		braced = "{" + labels + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %g\n%s_count%s %d\n", name, braced, math.Float64frombits(h.sumBits.Load()), name, braced, cum)
}

// labelValue quotes s as a Prometheus label value.
func labelValue(s string) string {
	return `"` + labelEscaper.Replace(s) + `"`
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
