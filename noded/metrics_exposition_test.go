package noded_test

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestMetricsExposition: the /metrics of a real noded, after calls that
// succeed, fail, are cancelled, aborted, released and refused for every
// reason a client can cause, is valid for Prometheus: every family has
// HELP and TYPE, promtool check metrics passes, and doc/operations.md
// names every family and every reason and state.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	text := exercisedMetrics(t)
	t.Run("metadata", func(t *testing.T) {
		for _, p := range expositionProblems(text) {
			t.Error(p)
		}
	})
	t.Run("documented", func(t *testing.T) {
		doc := metricsSection(t)
		for _, p := range undocumented(text, doc) {
			t.Errorf("%s, but the metrics section of doc/operations.md does not name it", p)
		}
		// The other way: what the doc and its alerts promise is there.
		for _, name := range regexp.MustCompile("`((?:noded|process)_[a-z_]+)").FindAllStringSubmatch(doc, -1) {
			if !strings.Contains(text, "\n# TYPE "+name[1]+" ") {
				t.Errorf("doc/operations.md names %s, which /metrics lacks", name[1])
			}
		}
	})
	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			if os.Getenv("CI") == "" {
				t.Skip("promtool is not installed (Debian: apt-get install prometheus); CI runs this check")
			}
			t.Fatalf("CI=%s but %v: .ci/run installs Debian's prometheus package for it", os.Getenv("CI"), err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on noded's /metrics: %v\n%s", err, out)
		}
	})
}

// exercisedMetrics runs calls of every outcome on a noded that runs one
// call at a time, and returns its /metrics.
func exercisedMetrics(t *testing.T) string {
	t.Helper()
	d := startNoded(t, "--max-running", "1")
	ok := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: []byte(`1`), Timeout: 20})
	wantState(t, "echo", ok, rpc.StateSucceeded, "")
	failed := d.start(t, rpc.StartRequest{FnName: "exit3", Timeout: 20})
	wantState(t, "exit3", failed, rpc.StateFailed, rpc.KindFunctionFailed)
	aborted := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60), AbortAfter: 0.2, Timeout: 20})
	wantState(t, "sleep with abort_after", aborted, rpc.StateAborted, rpc.KindAborted)
	if err := d.okCall(http.MethodPut, rpc.PathReleaseFunction, rpc.IDRequest{ID: ok.ID}, &rpc.ReleaseResponse{}); err != nil {
		t.Fatal(err)
	}
	d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "nope", Timeout: 1}, http.StatusNotFound, rpc.KindUnknownFunction)
	d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "no such", Timeout: 1}, http.StatusBadRequest, rpc.KindBadRequest)
	running := d.start(t, rpc.StartRequest{FnName: "sleep", FnArgs: sleepArgs(t, 60)})
	d.requestError(t, http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", Timeout: 1}, http.StatusServiceUnavailable, rpc.KindBusy)
	d.cancel(t, running.ID)
	wantState(t, "cancelled sleep", d.finish(t, running.ID), rpc.StateCancelled, rpc.KindCancelled)

	a, err := d.roundTrip(http.MethodGet, "/metrics", nil)
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("GET /metrics = %v, %d %s", err, a.status, a.body)
	}
	return string(a.body)
}

var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (\S.*)$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? \S+$`)
)

// expositionProblems checks the Prometheus text format as Prometheus
// reads it: each family's samples come together after a non-empty HELP
// and a TYPE; a histogram's or summary's series are its name with
// _bucket, _sum, _count or a quantile label; a counter ends in _total.
func expositionProblems(text string) []string {
	var problems []string
	var help, fam, typ string
	seen := make(map[string]bool)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := helpLine.FindStringSubmatch(line); m != nil {
			help = m[1]
			continue
		}
		if m := typeLine.FindStringSubmatch(line); m != nil {
			switch {
			case m[1] != help:
				problems = append(problems, "# TYPE "+m[1]+" without a HELP line with text before it")
			case seen[m[1]]:
				problems = append(problems, "family "+m[1]+" written twice")
			case m[2] == "counter" && !strings.HasSuffix(m[1], "_total"):
				problems = append(problems, "counter "+m[1]+" does not end in _total")
			}
			fam, typ, seen[m[1]] = m[1], m[2], true
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			problems = append(problems, "line "+line+" is neither HELP, TYPE nor a sample")
			continue
		}
		name := m[1]
		if typ == "histogram" || typ == "summary" {
			name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		}
		if name != fam {
			problems = append(problems, "sample "+line+" has no HELP and TYPE of its own family")
		}
	}
	return problems
}

// metricsSection returns the metrics table of doc/operations.md: from
// "## Metrics" to the alerts.
func metricsSection(t *testing.T) string {
	b, err := os.ReadFile("../doc/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, s, ok := strings.Cut(string(b), "\n## Metrics\n")
	s, _, ok2 := strings.Cut(s, "\n### What to alert on")
	if !ok || !ok2 {
		t.Fatal(`doc/operations.md has no "## Metrics" section ending at "### What to alert on"`)
	}
	return s
}

// undocumented returns what the exposition text has that doc does not
// name in backquotes: a family, or a value of a reason or state label.
func undocumented(text, doc string) []string {
	var missing []string
	named := func(s string) bool {
		return strings.Contains(doc, "`"+s+"`") || strings.Contains(doc, "`"+s+"{")
	}
	label := regexp.MustCompile(`\b(reason|state)="([^"]*)"`)
	seen := make(map[string]bool)
	for _, line := range strings.Split(text, "\n") {
		if m := typeLine.FindStringSubmatch(line); m != nil && !named(m[1]) {
			missing = append(missing, "/metrics has the family "+m[1])
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range label.FindAllStringSubmatch(line, -1) {
			if !seen[m[0]] && !named(m[2]) {
				missing = append(missing, "/metrics has the label "+m[0])
			}
			seen[m[0]] = true
		}
	}
	return missing
}

// TestContainmentMetric: /metrics says which containment new calls start
// in, one series per mode, 1 for the mode in force.
func TestContainmentMetric(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cgroup", "process-group"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			d := startNoded(t, "--containment", mode)
			a, err := d.roundTrip(http.MethodGet, "/metrics", nil)
			if err != nil || a.status != http.StatusOK {
				t.Fatalf("GET /metrics = %v, %d %s", err, a.status, a.body)
			}
			for _, m := range []string{"cgroup", "process-group"} {
				want := `noded_containment{mode="` + m + `"} 0`
				if m == mode {
					want = `noded_containment{mode="` + m + `"} 1`
				}
				if !strings.Contains(string(a.body), "\n"+want+"\n") {
					t.Errorf("/metrics under --containment %s lacks the line %s", mode, want)
				}
			}
		})
	}
}
