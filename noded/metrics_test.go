package noded

import (
	"os"
	"strings"
	"testing"
)

func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]float64{0.1, 1})
	for _, v := range []float64{0.05, 0.1, 0.5, 1, 7} {
		h.observe(v)
	}
	var got strings.Builder
	h.write(&got, "x_seconds", `fn="a"`)
	// le is inclusive: 0.1 counts in the 0.1 bucket, 1 in the 1 bucket.
	want := `x_seconds_bucket{fn="a",le="0.1"} 2
x_seconds_bucket{fn="a",le="1"} 4
x_seconds_bucket{fn="a",le="+Inf"} 5
x_seconds_sum{fn="a"} 8.65
x_seconds_count{fn="a"} 5
`
	if got.String() != want {
		t.Errorf("histogram after observing 0.05, 0.1, 0.5, 1, 7:\n%s\nwant\n%s", got.String(), want)
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"echo":          `"echo"`,
		`say "hi"`:      `"say \"hi\""`,
		`back\slash`:    `"back\\slash"`,
		"two\nlines":    `"two\nlines"`,
		"ünïcode-fn.sh": `"ünïcode-fn.sh"`,
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %s, want %s", in, got, want)
		}
	}
	// A function named by its file may hold any of these: the set must
	// accept the series and not panic.
	m := newMetrics()
	m.CallStarted("weird \"fn\"\\\n", 0)
	var out strings.Builder
	m.write(&out)
	if !strings.Contains(out.String(), `noded_calls_started_total{fn="weird \"fn\"\\\n"} 1`) {
		t.Errorf("metrics after a start of a function with quotes in its name lack its counter:\n%s", out.String())
	}
}

// TestFamiliesDocumented: every family noded may export, including those
// only some kernels give (pressure, cgroup throttling), is named in the
// metrics section of doc/operations.md, with the right type.
func TestFamiliesDocumented(t *testing.T) {
	b, err := os.ReadFile("../doc/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, _ := strings.Cut(string(b), "\n## Metrics\n")
	doc, _, _ = strings.Cut(doc, "\n### What to alert on")
	for name, f := range families {
		if f.help == "" || strings.ContainsAny(f.help, "\\\n") {
			t.Errorf("family %s has help %q; want text without a backslash or newline, which HELP would need escaped", name, f.help)
		}
		row := ""
		for _, line := range strings.Split(doc, "\n") {
			if strings.HasPrefix(line, "|") && (strings.Contains(line, "`"+name+"`") || strings.Contains(line, "`"+name+"{")) {
				row = line
				break
			}
		}
		if row == "" {
			t.Errorf("family %s has no row in the metrics tables of doc/operations.md", name)
		} else if !strings.Contains(row, "| "+f.typ+" |") {
			t.Errorf("family %s is a %s, but its row in doc/operations.md says otherwise: %s", name, f.typ, row)
		}
	}
	for from, to := range renamed {
		if _, ok := families[to]; !ok {
			t.Errorf("%s is renamed %s, which is not a family", from, to)
		}
	}
}

// TestWriteAnnotated: each family gets its HELP and TYPE once, before
// its first sample; the library's comments are dropped, its badly named
// series renamed, and an unknown family is left without metadata, which
// the exposition tests then refuse.
func TestWriteAnnotated(t *testing.T) {
	in := "# HELP go_cpu_count\n# TYPE go_cpu_count gauge\ngo_cpu_count 2\n" +
		"noded_spawn_seconds_bucket{le=\"+Inf\"} 1\nnoded_spawn_seconds_sum 0.5\nnoded_spawn_seconds_count 1\n" +
		"noded_calls_rejected_total{reason=\"busy\"} 0\nnoded_calls_rejected_total{reason=\"internal\"} 0\n" +
		"mystery_total 1\n"
	var out strings.Builder
	writeAnnotated(&out, []byte(in))
	want := "# HELP go_cpu_cores CPU cores of the host.\n# TYPE go_cpu_cores gauge\ngo_cpu_cores 2\n" +
		"# HELP noded_spawn_seconds Time to start a function process.\n# TYPE noded_spawn_seconds histogram\n" +
		"noded_spawn_seconds_bucket{le=\"+Inf\"} 1\nnoded_spawn_seconds_sum 0.5\nnoded_spawn_seconds_count 1\n" +
		"# HELP noded_calls_rejected_total Starts refused before any process ran, by reason (an rpc error kind).\n# TYPE noded_calls_rejected_total counter\n" +
		"noded_calls_rejected_total{reason=\"busy\"} 0\nnoded_calls_rejected_total{reason=\"internal\"} 0\n" +
		"mystery_total 1\n"
	if out.String() != want {
		t.Errorf("writeAnnotated(%q) =\n%s\nwant\n%s", in, out.String(), want)
	}
}
