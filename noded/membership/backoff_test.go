package membership

import (
	"slices"
	"testing"
	"time"
)

func TestCeilingDoublesToTheCap(t *testing.T) {
	for _, tc := range []struct {
		failed int
		want   time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{7, 6400 * time.Millisecond},
		{8, backoffCap},
		{9, backoffCap},
		{1000, backoffCap},
	} {
		if got := ceiling(tc.failed); got != tc.want {
			t.Errorf("ceiling(%d) = %v, want %v", tc.failed, got, tc.want)
		}
	}
}

// TestBackoffIsFullJitter checks that the wait is drawn from zero to the
// ceiling, both ends included.
func TestBackoffIsFullJitter(t *testing.T) {
	var asked []int64
	low := func(n int64) int64 { asked = append(asked, n); return 0 }
	high := func(n int64) int64 { return n - 1 }
	for _, failed := range []int{1, 4, 50} {
		if got := backoff(failed, low); got != 0 {
			t.Errorf("backoff(%d) with the lowest draw = %v, want 0", failed, got)
		}
		if got, want := backoff(failed, high), ceiling(failed); got != want {
			t.Errorf("backoff(%d) with the highest draw = %v, want the ceiling %v", failed, got, want)
		}
	}
	if want := []int64{int64(100*time.Millisecond) + 1, int64(800*time.Millisecond) + 1, int64(backoffCap) + 1}; !slices.Equal(asked, want) {
		t.Errorf("backoff drew from [0, n) with n = %v, want %v", asked, want)
	}
}

// TestPickerTriesEveryMasterBeforeAnyTwice drives the picker with a
// fixed draw and checks each round is a permutation of the known
// masters, in the order Fisher-Yates gives for that draw.
func TestPickerTriesEveryMasterBeforeAnyTwice(t *testing.T) {
	known := []string{"a", "b", "c"}
	p := picker{rand: func(int64) int64 { return 0 }}
	var got []string
	for range 6 {
		got = append(got, p.next(known))
	}
	// Draws of 0 swap the last with the first, then the middle with
	// the first: a b c -> c b a -> b c a.
	if want := []string{"b", "c", "a", "b", "c", "a"}; !slices.Equal(got, want) {
		t.Errorf("picks = %v, want %v", got, want)
	}
}

func TestPickerSkipsForgottenMastersAndResets(t *testing.T) {
	p := picker{rand: func(n int64) int64 { return n - 1 }} // no swaps: a b c
	if got := p.next([]string{"a", "b", "c"}); got != "a" {
		t.Fatalf("first pick = %q, want a", got)
	}
	if got := p.next([]string{"a", "c"}); got != "c" {
		t.Errorf("pick after b was forgotten = %q, want c", got)
	}
	p.next([]string{"a", "b", "c"}) // a new round: a
	p.reset()
	if got := p.next([]string{"a", "b"}); got != "a" {
		t.Errorf("pick after reset = %q, want a (a new round)", got)
	}
}

// TestPickerNeverPicksTheSameMasterTwiceInARow: a new round that would
// start with the master the last round ended with starts with another,
// so a dead master costs one back-off, not two in a row.
func TestPickerNeverPicksTheSameMasterTwiceInARow(t *testing.T) {
	p := picker{rand: func(n int64) int64 { return n - 1 }} // no shuffle swaps
	for _, want := range []string{"a", "b", "c"} {
		if got := p.next([]string{"a", "b", "c"}); got != want {
			t.Fatalf("pick = %q, want %q", got, want)
		}
	}
	// Unshuffled, the new round is c a b: c, picked last, is swapped
	// with the draw's master, b.
	if got := p.next([]string{"c", "a", "b"}); got != "b" {
		t.Errorf("first pick of a new round = %q, want b: c ended the last round", got)
	}
	if got := p.next([]string{"c", "a", "b"}); got != "a" {
		t.Errorf("second pick = %q, want a", got)
	}
	if got := p.next([]string{"c", "a", "b"}); got != "c" {
		t.Errorf("third pick = %q, want c: each master once a round still", got)
	}
	// One master: it is the only one to pick.
	one := picker{rand: func(n int64) int64 { return 0 }}
	for range 2 {
		if got := one.next([]string{"a"}); got != "a" {
			t.Errorf("pick among one master = %q, want a", got)
		}
	}
}
