package master

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// interruptingClock is a real clock whose first back-off runs before,
// then ends ctx, as a Ctrl-C during a retry's back-off does.
type interruptingClock struct {
	realClock
	before func()
	cancel context.CancelFunc
}

func (c *interruptingClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.before != nil {
		c.before()
		c.before = nil
	}
	c.cancel()
	return ctx.Err()
}

// A start whose every attempt was refused a connection reached no node:
// ctx ending during its back-off is ctx's error alone, with no call that
// "may be running" to look for.
func TestCallCancelledWhileUnreachableStartedNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections to addr are now refused
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := testOptions()
	opts.clock = &interruptingClock{cancel: cancel}
	c := newClient(t, addr, opts)
	_, err = c.Call(ctx, "echo", nil, CallOptions{})
	var ab *AbandonedCallError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ab) {
		t.Fatalf("Call to a node refusing connections, cancelled in its back-off = %v, want context.Canceled and no abandoned call", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q does not say what the attempts met", err)
	}
}

// A start the node answered busy started nothing: ctx ending during the
// back-off must not start the function once the node has room again.
func TestCallCancelledAfterBusyStartsNothing(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{
		Flags: []string{"--max-running", "1"},
		Functions: map[string]string{
			"hold": `while [ ! -e @STATE@/gate ]; do sleep 0.02; done; echo null`,
			"once": `echo null`,
		},
	})
	gate := filepath.Join(n.State(), "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	opts := testOptions()
	c := newClient(t, n.Addr(), opts)
	if _, err := c.StartFunction(context.Background(), rpc.StartRequest{FnName: "hold"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts.clock = &interruptingClock{cancel: cancel, before: func() {
		// The node gets room before ctx ends.
		os.WriteFile(gate, nil, 0o644)
		for deadline := time.Now().Add(30 * time.Second); len(runningCalls(t, c)) > 0; {
			if time.Now().After(deadline) {
				t.Fatal("hold still runs 30s after its gate opened")
			}
			time.Sleep(10 * time.Millisecond) // polling the node's own view
		}
	}}
	busy := newClient(t, n.Addr(), opts)
	_, err := busy.Call(ctx, "once", nil, CallOptions{})
	var ab *AbandonedCallError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ab) {
		t.Errorf("Call answered busy, cancelled in its back-off = %v, want context.Canceled and no abandoned call", err)
	}
	list, err := c.ListCalls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.FnName == "once" {
			t.Errorf("the node holds %+v, started after its Call was answered busy and cancelled before any other attempt", s)
		}
	}
}

// runningCalls lists the calls running on c's node.
func runningCalls(t *testing.T, c *Client) []rpc.CallSummary {
	t.Helper()
	list, err := c.ListCalls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var running []rpc.CallSummary
	for _, s := range list {
		if s.State == rpc.StateRunning {
			running = append(running, s)
		}
	}
	return running
}

// A failed release is logged with the call's ID under call_id, as every
// line about a call is.
func TestReleaseFailureLogsCallID(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	var log strings.Builder
	opts := queueingOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&log, nil)) // FlushReleases logs from this goroutine
	c := newClient(t, n.Addr(), opts)
	const id = "1:2:1700000000.000001:0123456789abcdef" // of a daemon long gone
	c.release(context.Background(), id)
	if err := c.FlushReleases(context.Background()); !errors.Is(err, rpc.ErrLost) {
		t.Errorf("FlushReleases of a call of a daemon long gone = %v, want lost", err)
	}
	if got := log.String(); !strings.Contains(got, "release failed") || !strings.Contains(got, "call_id="+id) {
		t.Errorf("log of a failed release = %q, want call_id=%s", got, id)
	}
}
