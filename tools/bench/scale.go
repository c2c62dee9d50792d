package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// Scale is what MeasureScale puts on a node.
type Scale struct {
	// Running sleep calls of Sleep each are started (at least 1); Sleep
	// must outlast starting them all and opening the waits.
	Running int
	Sleep   time.Duration
	// Waits WaitForFunction requests are opened at once, spread evenly
	// over the running calls.
	Waits int
	// Concurrency callers start and release the calls.
	Concurrency int
	// SocketTimeout is the client's longest wait for one answer; it
	// bounds the measurement with Sleep.
	SocketTimeout time.Duration
	// TLS is the client configuration /metrics is read with, as the
	// client's; nil for plain HTTP.
	TLS *tls.Config
}

// ConnsPerNode is the connection pool the client of MeasureScale should
// have (its master.Options.MaxConns): every wait holds a connection of
// its own.
func (s Scale) ConnsPerNode() int { return s.Waits + s.Concurrency + 1 }

// ErrNotLocal is matched (errors.Is) when MeasureScale cannot read the
// node's memory from /proc: the node does not run on this machine.
var ErrNotLocal = errors.New("the node's process is not on this machine")

// notLocalError is a failure to read the node's /proc status; it says
// which node, and matches ErrNotLocal.
type notLocalError struct {
	node string
	err  error
}

func (e *notLocalError) Error() string {
	return fmt.Sprintf("%v (is %s served by this machine?)", e.err, e.node)
}
func (e *notLocalError) Unwrap() error        { return e.err }
func (e *notLocalError) Is(target error) bool { return target == ErrNotLocal }

// ScaleReport is the outcome of MeasureScale. Memory figures are the
// node's own resident set (VmRSS of noded's process, not its children's)
// in bytes, and its thread count, each at three moments: before any call,
// once every call is running, and once every wait is open.
type ScaleReport struct {
	Node         string    `json:"node"`
	PID          int       `json:"pid"`
	Running      int       `json:"running"`
	Sleep        Seconds   `json:"sleep_seconds"`
	Start        Phase     `json:"start"`
	Waits        int       `json:"waits"`
	WaitsOpenMax int       `json:"waits_open_max"`
	Wait         WaitStats `json:"wait"`
	Release      Phase     `json:"release"`
	RSS          [3]int64  `json:"rss_bytes"` // idle, running, waiting
	Threads      [3]int    `json:"threads"`   // idle, running, waiting
	// PerRunningCall is (RSS running - RSS idle) / calls started.
	PerRunningCall float64 `json:"rss_bytes_per_running_call"`
	// PerOpenWait is (RSS waiting - RSS running) / WaitsOpenMax.
	PerOpenWait float64 `json:"rss_bytes_per_open_wait"`
}

// WaitStats counts the results of the waits.
type WaitStats struct {
	Results    int            `json:"results"`
	Errors     map[string]int `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	Elapsed    Seconds        `json:"elapsed_seconds"`
}

// OK reports whether every call started, every wait was open at once
// and returned a result, and every call was released.
func (r *ScaleReport) OK() bool {
	return r.Start.Successes == r.Running && r.Wait.Results == r.Waits && r.WaitsOpenMax == r.Waits && r.Release.Successes == r.Start.Successes
}

// MeasureScale measures the memory of the node of c, which must run on
// this machine (its /proc is read): it starts s.Running sleep calls,
// opens s.Waits waits on them, and releases them. It fails if the node
// does not answer Version (with the client's error) or its process
// cannot be read (ErrNotLocal); failed calls are counted in the report.
func MeasureScale(ctx context.Context, c *master.Client, s Scale) (*ScaleReport, error) {
	// Bounded even if the node stalls: the sleeps, then two rounds.
	ctx, cancel := context.WithTimeout(ctx, 2*s.Sleep+2*s.SocketTimeout+time.Minute)
	defer cancel()
	v, err := c.Version(ctx)
	if err != nil {
		return nil, err
	}
	r := &ScaleReport{Node: c.Node(), PID: v.PID, Running: s.Running, Sleep: Seconds(s.Sleep), Waits: s.Waits}
	sample := func(i int) error {
		var err error
		r.RSS[i], r.Threads[i], err = procStatus(v.PID)
		return err
	}
	if err := sample(0); err != nil {
		return nil, &notLocalError{node: c.Node(), err: err}
	}
	started := startSleeps(ctx, c, s, r)
	sample(1)
	if len(started) > 0 {
		r.PerRunningCall = float64(r.RSS[1]-r.RSS[0]) / float64(len(started))
	}
	if len(started) > 0 && s.Waits > 0 {
		r.Wait, r.WaitsOpenMax = openWaits(ctx, c, s.TLS, started, s.Waits, func() { sample(2) })
		if r.WaitsOpenMax > 0 {
			r.PerOpenWait = float64(r.RSS[2]-r.RSS[1]) / float64(r.WaitsOpenMax)
		}
	}
	r.Release = runLoad(ctx, loadSpec{concurrency: s.Concurrency, count: len(started), duration: s.SocketTimeout + s.Sleep},
		func(i int) (time.Duration, error) {
			start := time.Now()
			err := c.ReleaseFunction(ctx, started[i])
			return time.Since(start), err
		}).phase()
	return r, nil
}

// startSleeps starts the sleep calls of s, fills r.Start, and returns the
// IDs of the calls started.
func startSleeps(ctx context.Context, c *master.Client, s Scale, r *ScaleReport) []string {
	args, _ := json.Marshal(map[string]float64{"seconds": s.Sleep.Seconds()})
	ids := make([]string, s.Running)
	r.Start = runLoad(ctx, loadSpec{concurrency: s.Concurrency, count: s.Running, duration: s.Sleep},
		func(i int) (time.Duration, error) {
			start := time.Now()
			rec, err := c.StartFunction(ctx, rpc.StartRequest{FnName: "sleep", FnArgs: args})
			if err == nil {
				ids[i] = rec.ID
			}
			return time.Since(start), err
		}).phase()
	var started []string
	for _, id := range ids {
		if id != "" {
			started = append(started, id)
		}
	}
	return started
}

// openWaits opens n waits spread evenly over the calls ids, watches the
// node's count of open waits until it reaches n (or every wait has
// returned), calls atPeak then, and collects every wait's result. It
// returns the results and the most waits seen open at once.
func openWaits(ctx context.Context, c *master.Client, tlsConfig *tls.Config, ids []string, n int, atPeak func()) (WaitStats, int) {
	st := WaitStats{Errors: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		wg.Go(func() {
			_, err := c.Await(ctx, ids[i%len(ids)], master.CallOptions{Keep: true})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				st.Errors[errorKind(err)]++
				if st.FirstError == "" {
					st.FirstError = err.Error()
				}
				return
			}
			st.Results++
		})
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer hc.CloseIdleConnections()
	peak := 0
	sampled := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// Polling /metrics: the node offers no event for "n waits are open".
	// The loop ends when they are, or when the waits have all returned.
watch:
	for {
		open, err := waitsInFlight(ctx, hc, tlsConfig != nil, c.Node())
		if err == nil && open > peak {
			peak = open
			atPeak()
			sampled = true
		}
		if peak >= n {
			break
		}
		select {
		case <-allDone:
			break watch
		case <-ctx.Done():
			break watch
		case <-tick.C:
		}
	}
	if !sampled {
		atPeak()
	}
	<-allDone
	st.Elapsed = Seconds(time.Since(begin))
	return st, min(peak, n)
}

// waitsInFlight reads noded_wait_requests_in_flight from the node's
// /metrics through hc, whose transport presents the client certificate
// of the other requests, if any.
func waitsInFlight(ctx context.Context, hc *http.Client, overTLS bool, node string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	scheme := "http"
	if overTLS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+node+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	// Bounded as every answer of a node is: the scanner holds a line at
	// a time, the limit stops a node that streams forever, and ctx's
	// deadline is for the whole answer.
	return metricValue(io.LimitReader(resp.Body, master.DefaultMaxAnswer), "noded_wait_requests_in_flight")
}

// metricValue finds the value of an unlabelled metric in Prometheus text.
func metricValue(r io.Reader, name string) (int, error) {
	sc := bufio.NewScanner(r)
	prefix := []byte(name + " ")
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), prefix); ok {
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// procStatus reads the resident set size in bytes and the thread count of
// process pid.
func procStatus(pid int) (rss int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch string(f[0]) {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(string(f[1]), 10, 64)
			rss = kb << 10
			found++
		case "Threads:":
			threads, _ = strconv.Atoi(string(f[1]))
			found++
		}
	}
	if found != 2 {
		return 0, 0, errors.New("no VmRSS or Threads in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return rss, threads, nil
}

// Print writes the report for a person.
func (r *ScaleReport) Print(w io.Writer) {
	mb := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	kb := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
	fmt.Fprintf(w, "scale on %s (noded pid %d): %d of %d sleep calls of %s started in %s, errors: %s\n",
		r.Node, r.PID, r.Start.Successes, r.Running, fmtDur(r.Sleep), fmtDur(r.Start.Elapsed), errorSummary(r.Start))
	fmt.Fprintf(w, "  noded RSS %s idle, %s with the calls running (%s per running call), %s with the waits open (%s per open wait)\n",
		mb(r.RSS[0]), mb(r.RSS[1]), kb(r.PerRunningCall), mb(r.RSS[2]), kb(r.PerOpenWait))
	fmt.Fprintf(w, "  noded threads %d idle, %d running, %d waiting\n", r.Threads[0], r.Threads[1], r.Threads[2])
	fmt.Fprintf(w, "  waits: %d sent, %d open at once at most, %d results collected in %s, errors: %s\n",
		r.Waits, r.WaitsOpenMax, r.Wait.Results, fmtDur(r.Wait.Elapsed), errorSummary(Phase{Errors: r.Wait.Errors, FirstError: r.Wait.FirstError}))
	if r.WaitsOpenMax < r.Waits && len(r.Wait.Errors) == 0 {
		fmt.Fprintf(w, "  not every wait was open at once: the calls ended first; give a longer --sleep\n")
	}
	fmt.Fprintf(w, "  releases: %d, errors: %s\n", r.Release.Successes, errorSummary(r.Release))
}
