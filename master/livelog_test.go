package master

import (
	"context"
	"testing"
	"time"
)

// The start's round wakes at the function's first log line, as the wait
// rounds do: a watcher sees it while the function runs, not at the end of
// a round of half the socket timeout.
func TestCallShowsFirstLogLinesDuringStartRound(t *testing.T) {
	n, open, _ := gatedNode(t)
	c := newClient(t, n.Addr(), startRoundOptions()) // rounds of 20s
	lines := make(chan LogLine, 10)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "gated", nil, CallOptions{OnLog: func(l LogLine) { lines <- l }})
		done <- err
	}()
	// The function blocks until the gate opens, so its line can only
	// arrive during the start's round; far less than a round is allowed.
	select {
	case l := <-lines:
		if l.Text != "waiting" || l.N != 0 {
			t.Errorf("first log line = %+v, want line 0 \"waiting\"", l)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no log line within 10s of a function that logged at once; the start's round holds it back")
	}
	open()
	if err := <-done; err != nil {
		t.Fatalf("Call = %v", err)
	}
}
