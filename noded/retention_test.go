package noded_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// liveHeap is the heap's live bytes after two collections.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRetainedCallHoldsItsResultOnly: a finished call that waits for its
// release holds its result and little else, so that --retention's worst
// case is what doc/operations.md says (the retained calls times
// --max-result). A call of a large request used to hold its whole
// request body as well: the function's name, kept by the call, was a
// string the JSON library had decoded into its copy of the body.
func TestRetainedCallHoldsItsResultOnly(t *testing.T) {
	for _, fn := range []string{"echo", "cat"} {
		t.Run(fn, func(t *testing.T) { testRetainedCall(t, fn) })
	}
}

// testRetainedCall measures what releasing calls of fn frees: the Go
// function echo (a result frame) or the executable cat (raw output).
func testRetainedCall(t *testing.T, fn string) {
	const size, calls = 4 << 20, 3
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cat"), []byte("#!/bin/sh\nexec cat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := startInProcess(t, "--warm", "0", "--max-request", "20000000", "--max-result", "20000000", "--functions-dir", dir)
	args := json.RawMessage(`{"a":"` + strings.Repeat("x", size) + `"}`)
	var ids []string
	for i := 0; i < calls; i++ {
		c, err := n.client.StartFunction(context.Background(), rpc.StartRequest{FnName: fn, FnArgs: args, Timeout: 60, RequestID: strings.Repeat("r", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		if c.State != rpc.StateSucceeded {
			t.Fatalf("%s of %d bytes: %s %+v", fn, size, c.State, c.Error)
		}
		ids = append(ids, c.ID)
	}
	held := liveHeap()
	for _, id := range ids {
		if err := n.client.ReleaseFunction(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	freed := int64(held) - int64(liveHeap())
	if limit := int64(calls * size * 13 / 10); freed > limit {
		t.Errorf("releasing %d calls with results of %d bytes freed %d bytes, %.1f × their results; want at most 1.3 ×",
			calls, size, freed, float64(freed)/float64(calls*size))
	}
	if freed < int64(calls*size) {
		t.Errorf("releasing %d calls with results of %d bytes freed only %d bytes: the measure is broken", calls, size, freed)
	}
}
