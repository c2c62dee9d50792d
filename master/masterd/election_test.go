package masterd

import "testing"

// TestBestCandidate checks who takes over when no master is active: the
// highest priority, and of equals the oldest candidate key.
func TestBestCandidate(t *testing.T) {
	for _, tc := range []struct {
		candidates []candidate
		want       string
	}{
		{[]candidate{{URL: "a", Priority: 0, created: 5}, {URL: "b", Priority: 2, created: 9}, {URL: "c", Priority: 1, created: 1}}, "b"},
		{[]candidate{{URL: "a", Priority: 1, created: 5}, {URL: "b", Priority: 1, created: 3}, {URL: "c", Priority: -1, created: 1}}, "b"},
		{[]candidate{{URL: "a", created: 7}}, "a"},
		{nil, ""},
	} {
		if got := (view{candidates: tc.candidates}).best(); got.URL != tc.want {
			t.Errorf("best of %+v = %q, want %q", tc.candidates, got.URL, tc.want)
		}
	}
}
