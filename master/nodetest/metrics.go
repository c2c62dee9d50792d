package nodetest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricsClient scrapes on a connection of its own, closed after each
// scrape, so that scraping leaves no descriptor open in noded: the fault
// tests count them.
var metricsClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// ParseMetrics reads the Prometheus text exposition format and returns
// each sample's value by series, "name" or "name{labels}" as written.
// Comments and blank lines are skipped; a line that is not "series
// value", or a series given twice, is an error.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	samples := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q is not \"series value\"", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q is not \"series value\": %v", line, err)
		}
		series := strings.TrimSpace(line[:i])
		if _, dup := samples[series]; dup {
			return nil, fmt.Errorf("metrics series %s written twice", series)
		}
		samples[series] = v
	}
	return samples, sc.Err()
}

// ReleasedCalls is noded's series of the finished calls its clients
// released (by ReleaseFunction or a start's release field).
const ReleasedCalls = `noded_calls_dropped_total{reason="released"}`

// Metrics scrapes GET /metrics of a node serving plain HTTP and parses
// it with [ParseMetrics]. An answer other than 200 with a text/plain
// body is an error.
func (n *Node) Metrics() (map[string]float64, error) {
	if n.opts.TLS != nil {
		return nil, fmt.Errorf("nodetest: Metrics scrapes plain HTTP; noded %s serves TLS", n.Addr())
	}
	resp, err := metricsClient.Get(n.URL() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET /metrics = %s, Content-Type %q; want 200 text/plain", resp.Status, ct)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	return m, nil
}

// AwaitMetrics scrapes until every series of want has its value there,
// and returns that scrape; the test fails after 20s, naming what
// differs. noded counts a call's end just after it answers the call.
// Call it from the test's goroutine.
func (n *Node) AwaitMetrics(t testing.TB, want map[string]float64) map[string]float64 {
	t.Helper()
	var wrong []string
	got := n.awaitMetrics(t, func(m map[string]float64) bool {
		wrong = wrong[:0]
		for series, w := range want {
			if g, ok := m[series]; !ok {
				wrong = append(wrong, fmt.Sprintf("%s missing, want %g", series, w))
			} else if g != w {
				wrong = append(wrong, fmt.Sprintf("%s = %g, want %g", series, g, w))
			}
		}
		return len(wrong) == 0
	})
	if got == nil {
		sort.Strings(wrong)
		t.Fatalf("GET /metrics of noded %s after 20s:\n  %s", n.Addr(), strings.Join(wrong, "\n  "))
	}
	return got
}

// AwaitMetric scrapes until ok holds for the value of series, and
// returns it; the test fails after 20s, saying what was wanted. Call it
// from the test's goroutine.
func (n *Node) AwaitMetric(t testing.TB, series, what string, ok func(float64) bool) float64 {
	t.Helper()
	got := n.awaitMetrics(t, func(m map[string]float64) bool {
		v, found := m[series]
		return found && ok(v)
	})
	if got == nil {
		t.Fatalf("GET /metrics of noded %s: %s not %s within 20s", n.Addr(), series, what)
	}
	return got[series]
}

// awaitMetrics scrapes until done holds and returns that scrape, or nil
// after 20s. A scrape that fails is retried until then, and its error
// reported if it is the last.
func (n *Node) awaitMetrics(t testing.TB, done func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := n.Metrics()
		if err == nil && done(m) {
			return m
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Errorf("scraping noded %s: %v", n.Addr(), err)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics, which has no event to wait on
	}
}
