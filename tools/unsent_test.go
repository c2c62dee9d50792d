package tools

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// A call interrupted before any attempt of its start reached its node
// (here: before noderpc sent anything) says that nothing was started,
// in the words of the other interrupted calls, not a context's error.
func TestInterruptBeforeAnyStartSaysNothingStarted(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := Run(ctx, append(append([]string(nil), fast...), "call", n.Addr(), "echo", "[1]"), nil, &out, &errb)
	want := n.Addr() + ": interrupted before the node took the call; nothing was started"
	if code != ExitFailed || !strings.HasPrefix(errb.String(), want) {
		t.Errorf("interrupted call = exit %d, stderr %q; want exit %d and %q", code, errb.String(), ExitFailed, want)
	}
}
