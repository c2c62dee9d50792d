package nodetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FunctionsDir returns the node's --functions-dir, which holds the
// functions of Options.Functions and Options.FunctionsFrom.
func (n *Node) FunctionsDir() string { return filepath.Join(n.dir, "functions") }

// State returns the directory that "@STATE@" stands for in the node's
// script functions, where they record what a test checks: their PIDs in
// State()/pids (see [Node.RecordedPIDs]), and whatever else they like.
func (n *Node) State() string { return filepath.Join(n.dir, "state") }

// install makes the functions and state directories and writes the
// script functions of the options into the first.
func (n *Node) install() error {
	for _, d := range []string{n.FunctionsDir(), filepath.Join(n.State(), "pids")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	scripts := make(map[string]string)
	if from := n.opts.FunctionsFrom; from != "" {
		entries, err := os.ReadDir(from)
		if err != nil {
			return fmt.Errorf("nodetest: reading Options.FunctionsFrom: %w", err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(from, e.Name()))
			if err != nil {
				return fmt.Errorf("nodetest: reading Options.FunctionsFrom: %w", err)
			}
			scripts[e.Name()] = string(b)
		}
	}
	for name, text := range n.opts.Functions {
		scripts[name] = text
	}
	// A file still open for writing cannot be executed (ETXTBSY), and a
	// fork elsewhere in this process would inherit the descriptor until
	// its exec: hold off forks while writing.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	for name, text := range scripts {
		if !strings.HasPrefix(text, "#!") {
			text = "#!/bin/sh\n" + text
		}
		text = strings.ReplaceAll(text, "@STATE@", n.State())
		if err := os.WriteFile(filepath.Join(n.FunctionsDir(), name), []byte(text), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// RecordedPIDs returns the PIDs the node's script functions recorded in
// State()/pids: one per file, each written whole by rename, so files
// ending in .tmp are still being written and left out.
func (n *Node) RecordedPIDs() []int {
	dir := filepath.Join(n.State(), "pids")
	entries, _ := os.ReadDir(dir)
	var pids []int
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// AwaitPIDFile polls for the PID file State()/pids/NAME a script writes
// (by rename, whole) until it is there or d has passed, and returns the
// PID in it; ok is false if there is none by then, or it holds no PID. A
// script writes it once it is ready (its traps set): the file is the
// readiness signal to wait for before signalling the script.
func (n *Node) AwaitPIDFile(name string, d time.Duration) (pid int, ok bool) {
	path := filepath.Join(n.State(), "pids", name)
	deadline := time.Now().Add(d)
	for {
		if b, err := os.ReadFile(path); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			return pid, err == nil
		}
		if !time.Now().Before(deadline) {
			return 0, false
		}
		time.Sleep(10 * time.Millisecond) // polling for a file a script writes
	}
}

// WaitPIDFile is [Node.AwaitPIDFile] for 20s from the test's goroutine:
// the test fails if the file does not come.
func (n *Node) WaitPIDFile(t testing.TB, name string) int {
	t.Helper()
	pid, ok := n.AwaitPIDFile(name, 20*time.Second)
	if !ok {
		t.Fatalf("no PID in %s within 20s; noded's log:\n%s", filepath.Join(n.State(), "pids", name), tail(n.Log(), 8<<10))
	}
	return pid
}
