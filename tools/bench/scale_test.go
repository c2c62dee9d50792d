package bench

import (
	"strings"
	"testing"
)

func TestMetricValue(t *testing.T) {
	text := "noded_wait_requests_in_flight_total 3\nnoded_wait_requests_in_flight 42\nnoded_calls_running 7\n"
	for _, tc := range []struct {
		name    string
		want    int
		wantErr bool
	}{
		{"noded_wait_requests_in_flight", 42, false},
		{"noded_calls_running", 7, false},
		{"noded_absent", 0, true},
	} {
		got, err := metricValue(strings.NewReader(text), tc.name)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("metricValue(%s) = %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}
