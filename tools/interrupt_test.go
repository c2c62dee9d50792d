package tools

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// gatedNode runs "gated", which logs a line and then runs until the
// test ends.
func gatedNode(t *testing.T) *nodetest.Node {
	t.Helper()
	n := nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"gated": `echo waiting >&2; while [ ! -e @STATE@/gate ]; do sleep 0.02; done; echo '"opened"'`,
	}})
	t.Cleanup(func() { os.WriteFile(filepath.Join(n.State(), "gate"), nil, 0o644) })
	return n
}

// runningCall polls the node's list until it holds a running call of fn,
// and returns its ID.
func runningCall(t *testing.T, c *master.Client, fn string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		list, err := c.ListCalls(context.Background())
		if err != nil {
			t.Fatalf("ListCalls: %v", err)
		}
		for _, s := range list {
			if s.FnName == fn && s.State == rpc.StateRunning {
				return s.ID
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the node's own view
	}
	t.Fatalf("no running call of %s within 20s", fn)
	return ""
}

// Ctrl-C during the start's round (the first half socket timeout) stops
// noderpc at once, and it says which call goes on, where, and the exact
// commands to wait for it or cancel it; the printed cancel works.
func TestInterruptDuringStartNamesTheRunningCall(t *testing.T) {
	noderpc := nodetest.Binary(t, noderpcPackage)
	n := gatedNode(t)
	c, err := master.New(n.Addr(), master.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, cmdName := range []string{"call", "start"} {
		t.Run(cmdName, func(t *testing.T) {
			// A start round of 30s: the interrupt lands in it.
			args := []string{"--insecure", "--socket-timeout", "60s", "--unreachable-after", "120s", cmdName}
			if cmdName == "start" {
				args = append(args, "--timeout", "30s")
			}
			cmd := exec.Command(noderpc, append(args, n.Addr(), "gated")...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			id := runningCall(t, c, "gated")
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != ExitFailed {
				t.Errorf("exit status %d after Ctrl-C, want %d", code, ExitFailed)
			}
			q := regexp.QuoteMeta
			want := regexp.MustCompile(`(?m)^` + q(n.Addr()+": interrupted; call "+id+" (gated) is still running on "+n.Addr()) + `\n` +
				q(n.Addr()+": wait for it:  noderpc --insecure wait "+n.Addr()+" "+id) + `\n` +
				q(n.Addr()+": cancel it:    noderpc --insecure cancel "+n.Addr()+" "+id) + `\n`)
			if !want.MatchString(stderr.String()) {
				t.Fatalf("stderr after Ctrl-C:\n%s\nwant it to match %s", stderr.String(), want)
			}
			if cmdName == "start" && strings.TrimSpace(stdout.String()) != id {
				t.Errorf("start printed %q on stdout, want the call's ID %s", stdout.String(), id)
			}
			// The printed cancel command stops the call.
			cancel := exec.Command(noderpc, "--insecure", "cancel", n.Addr(), id)
			out, err := cancel.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "cancelled") {
				t.Errorf("the printed cancel command: %v\n%s", err, out)
			}
			if err := c.ReleaseFunction(context.Background(), id); err != nil {
				t.Errorf("release %s: %v", id, err)
			}
		})
	}
}

// A node that takes the start and then answers nothing, not even the
// repeated start that would say the call's ID: noderpc says the call
// may be running, under which request_id, and how to look for it.
func TestInterruptBeforeTheIDIsKnown(t *testing.T) {
	fake := nodetest.StartFake(t, nodetest.Silent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"--insecure", "--socket-timeout", "4s", "--unreachable-after", "8s", "call", fake.Addr, "echo"}, nil, &stdout, &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for fake.Requests.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the fake node's count
	}
	cancel()
	if code := <-done; code != ExitFailed {
		t.Errorf("exit %d, want %d", code, ExitFailed)
	}
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(fake.Addr) + `: interrupted before the node said the call's ID; echo may be running \(request_id [0-9a-f-]{36}\): look for it with: noderpc --insecure --json calls ` + regexp.QuoteMeta(fake.Addr) + "\n$")
	if !want.MatchString(stderr.String()) {
		t.Errorf("stderr %q, want it to match %s", stderr.String(), want)
	}
	if n := fake.Requests.Load(); n != 2 {
		t.Errorf("the node got %d requests, want the start and its repeat", n)
	}
}

// A second Ctrl-C ends noderpc at once, while the first has it still
// asking a silent node for the call's ID.
func TestSecondInterruptEndsAtOnce(t *testing.T) {
	noderpc := nodetest.Binary(t, noderpcPackage)
	fake := nodetest.StartFake(t, nodetest.Silent)
	cmd := exec.Command(noderpc, "--insecure", "--socket-timeout", "60s", "--unreachable-after", "120s", "call", fake.Addr, "echo")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for fake.Requests.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the fake node's count
	}
	// The first interrupt starts the repeat of the start, which the node
	// leaves unanswered; the ones after end the process.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
			done = true
		case <-tick.C:
		}
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("noderpc ended with %v, want killed by the second SIGINT", cmd.ProcessState)
	}
}
