package tools

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// scaleOptions are the flags of bench --scale.
type scaleOptions struct {
	on      bool
	running int
	waits   int
	sleep   time.Duration
}

func (s *scaleOptions) check() error {
	switch {
	case !s.on:
		return nil
	case s.running < 1:
		return fmt.Errorf("--running must be at least 1, got %d", s.running)
	case s.waits < 0:
		return fmt.Errorf("--waits must not be negative, got %d", s.waits)
	case s.sleep <= 0:
		return fmt.Errorf("--sleep must be above 0, got %s", s.sleep)
	}
	return nil
}

// scaleReport is the outcome of bench --scale. Memory figures are the
// node's own resident set (VmRSS of noded's process, not its children's)
// in bytes, and its thread count, each at three moments: before any call,
// once every call is running, and once every wait is open.
type scaleReport struct {
	Node         string    `json:"node"`
	PID          int       `json:"pid"`
	Running      int       `json:"running"`
	Sleep        seconds   `json:"sleep_seconds"`
	Start        phase     `json:"start"`
	Waits        int       `json:"waits"`
	WaitsOpenMax int       `json:"waits_open_max"`
	Wait         waitStats `json:"wait"`
	Release      phase     `json:"release"`
	RSS          [3]int64  `json:"rss_bytes"` // idle, running, waiting
	Threads      [3]int    `json:"threads"`   // idle, running, waiting
	// PerRunningCall is (RSS running - RSS idle) / calls started.
	PerRunningCall float64 `json:"rss_bytes_per_running_call"`
	// PerOpenWait is (RSS waiting - RSS running) / WaitsOpenMax.
	PerOpenWait float64 `json:"rss_bytes_per_open_wait"`
}

// waitStats counts the results of the waits.
type waitStats struct {
	Results    int            `json:"results"`
	Errors     map[string]int `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	Elapsed    seconds        `json:"elapsed_seconds"`
}

// benchScale runs bench --scale against the one node in nodes.
func (a *app) benchScale(ctx context.Context, nodes []string, o benchOptions) int {
	s := o.scale
	if len(nodes) != 1 {
		return a.commandUsageError("--scale measures one node, got %d", len(nodes))
	}
	node := nodes[0]
	host, _, _ := net.SplitHostPort(node)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return a.commandUsageError("--scale reads the node's memory from /proc: NODE must be a loopback address, got %s", node)
	}
	opts := a.options()
	// Every wait holds a connection of its own.
	opts.MaxConns = s.waits + o.concurrency + 1
	clients, err := a.clients(nodes, opts)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	c := clients[0]
	defer c.Close()
	// Bounded even if the node stalls: the sleeps, then two rounds.
	ctx, cancel := context.WithTimeout(ctx, 2*s.sleep+2*a.socketTimeout+time.Minute)
	defer cancel()

	v, err := c.Version(ctx)
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		return statusOf(err)
	}
	r := scaleReport{Node: node, PID: v.PID, Running: s.running, Sleep: seconds(s.sleep), Waits: s.waits}
	sample := func(i int) error {
		var err error
		r.RSS[i], r.Threads[i], err = procStatus(v.PID)
		return err
	}
	if err := sample(0); err != nil {
		fmt.Fprintf(a.stderr, "noderpc bench: %v (is %s served by this machine?)\n", err, node)
		return ExitFailed
	}

	args, _ := json.Marshal(map[string]float64{"seconds": s.sleep.Seconds()})
	ids := make([]string, s.running)
	r.Start = runLoad(ctx, loadSpec{concurrency: o.concurrency, count: s.running, duration: s.sleep},
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
	sample(1)
	if len(started) > 0 {
		r.PerRunningCall = float64(r.RSS[1]-r.RSS[0]) / float64(len(started))
	}

	if len(started) > 0 && s.waits > 0 {
		r.Wait, r.WaitsOpenMax = a.openWaits(ctx, c, started, s.waits, func() { sample(2) })
		if r.WaitsOpenMax > 0 {
			r.PerOpenWait = float64(r.RSS[2]-r.RSS[1]) / float64(r.WaitsOpenMax)
		}
	}
	r.Release = runLoad(ctx, loadSpec{concurrency: o.concurrency, count: len(started), duration: a.socketTimeout + s.sleep},
		func(i int) (time.Duration, error) {
			start := time.Now()
			err := c.ReleaseFunction(ctx, started[i])
			return time.Since(start), err
		}).phase()

	if a.json {
		a.emitJSON(r)
	} else {
		r.print(a.stdout)
	}
	if r.Start.Successes != s.running || r.Wait.Results != s.waits || r.WaitsOpenMax != s.waits || r.Release.Successes != len(started) {
		return ExitFailed
	}
	return ExitOK
}

// openWaits opens n waits spread evenly over the calls ids, watches the
// node's count of open waits until it reaches n (or every wait has
// returned), calls atPeak then, and collects every wait's result. It
// returns the results and the most waits seen open at once.
func (a *app) openWaits(ctx context.Context, c *master.Client, ids []string, n int, atPeak func()) (waitStats, int) {
	st := waitStats{Errors: map[string]int{}}
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

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tls}}
	defer hc.CloseIdleConnections()
	peak := 0
	sampled := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// Polling /metrics: the node offers no event for "n waits are open".
	// The loop ends when they are, or when the waits have all returned.
watch:
	for {
		open, err := a.waitsInFlight(ctx, hc, c.Node())
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
	st.Elapsed = seconds(time.Since(begin))
	return st, min(peak, n)
}

// waitsInFlight reads noded_wait_requests_in_flight from the node's
// /metrics, with the client certificate of the other requests, if any.
func (a *app) waitsInFlight(ctx context.Context, hc *http.Client, node string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	scheme := "https"
	if a.tls == nil {
		scheme = "http"
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
	return metricValue(resp.Body, "noded_wait_requests_in_flight")
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

// print writes the report for a person.
func (r *scaleReport) print(w io.Writer) {
	mb := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	kb := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
	fmt.Fprintf(w, "scale on %s (noded pid %d): %d of %d sleep calls of %s started in %s, errors: %s\n",
		r.Node, r.PID, r.Start.Successes, r.Running, fmtDur(r.Sleep), fmtDur(r.Start.Elapsed), errorSummary(r.Start))
	fmt.Fprintf(w, "  noded RSS %s idle, %s with the calls running (%s per running call), %s with the waits open (%s per open wait)\n",
		mb(r.RSS[0]), mb(r.RSS[1]), kb(r.PerRunningCall), mb(r.RSS[2]), kb(r.PerOpenWait))
	fmt.Fprintf(w, "  noded threads %d idle, %d running, %d waiting\n", r.Threads[0], r.Threads[1], r.Threads[2])
	fmt.Fprintf(w, "  waits: %d sent, %d open at once at most, %d results collected in %s, errors: %s\n",
		r.Waits, r.WaitsOpenMax, r.Wait.Results, fmtDur(r.Wait.Elapsed), errorSummary(phase{Errors: r.Wait.Errors, FirstError: r.Wait.FirstError}))
	if r.WaitsOpenMax < r.Waits && len(r.Wait.Errors) == 0 {
		fmt.Fprintf(w, "  not every wait was open at once: the calls ended first; give a longer --sleep\n")
	}
	fmt.Fprintf(w, "  releases: %d, errors: %s\n", r.Release.Successes, errorSummary(r.Release))
}
