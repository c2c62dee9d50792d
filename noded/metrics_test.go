package noded

import (
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
