package master

import (
	"context"
	"testing"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestLargestLegitimateAnswerFitsDefaultMaxAnswer has a real noded, with
// its default limits, send the largest answer it can: a record with a
// whole result and a whole log of lines that each escape to six times
// their size. The default bound must take it.
func TestLargestLegitimateAnswerFitsDefaultMaxAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 40 MB through a real noded")
	}
	// 1000 lines of 5000 control characters, cut by noded to 4096 and
	// " [line truncated]", and a result of exactly --max-result bytes.
	script := `#!/bin/sh
line=$(head -c 5000 /dev/zero | tr '\0' '\001')
i=0
while [ $i -lt 1000 ]; do printf '%s\n' "$line"; i=$((i+1)); done >&2
printf '"'; head -c $((16777216-2)) /dev/zero | tr '\0' 'a'; printf '"'
`
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{"largest": script}})
	c, err := New(n.Addr(), Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rec, err := c.StartFunction(ctx, rpc.StartRequest{FnName: "largest"})
	for err == nil && !rec.Finished {
		rec, err = c.WaitForFunction(ctx, rpc.WaitRequest{ID: rec.ID, Timeout: 5})
	}
	if err != nil {
		t.Fatalf("running largest: %v", err)
	}
	// The answer that matters: the finished call with its whole log.
	rec, err = c.WaitForFunction(ctx, rpc.WaitRequest{ID: rec.ID, LogOffset: 0})
	if err != nil {
		t.Fatalf("WaitForFunction of the finished call from log line 0 = %v, want the whole record within DefaultMaxAnswer", err)
	}
	wire, err := json.Marshal(rec) // as noded encodes it
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answer of %d bytes, DefaultMaxAnswer %d (%.2f%% used)", len(wire), DefaultMaxAnswer, 100*float64(len(wire))/float64(DefaultMaxAnswer))
	if rec.State != rpc.StateSucceeded || len(rec.Result) != 16<<20 || len(rec.Log) != 1000 || len(wire) < 40_000_000 {
		t.Errorf("largest ended %s with a result of %d bytes, %d log lines, %d bytes in all; want success, 16 MiB, 1000 lines, over 40 MB",
			rec.State, len(rec.Result), len(rec.Log), len(wire))
	}
	c.ReleaseFunction(ctx, rec.ID)
}
