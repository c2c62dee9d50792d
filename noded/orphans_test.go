package noded_test

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// leaveSleep is a function that starts a sleep of its own, records its
// PID in STATE/sleep once it runs, and waits for it: when noded dies, the
// parent-death signal ends the shell, and the sleep is the orphan the
// next noded must kill.
const leaveSleep = `#!/bin/sh
cat >/dev/null
sleep 600 &
echo $! > STATE/sleep.tmp && mv STATE/sleep.tmp STATE/sleep
wait
`

// TestZombiePredecessor: a noded SIGKILLed whose parent has not reaped it
// (a shell script, a container's init, a quick restart) is a zombie, not
// a running daemon. The next noded started on the host must kill what the
// dead one's calls left running before it listens, and say so in its
// log, in either containment mode.
//
// Every noded that starts kills the orphans of every dead daemon on the
// host, so another noded (of a test running in parallel, in this package
// or another) may kill the sleep first and leave the log of the one under
// test silent. That is no failure of the one under test, so the round is
// run again, up to three times; a noded that never logs the kill fails
// every round. Whoever kills it, the sleep must be gone.
func TestZombiePredecessor(t *testing.T) {
	for _, containment := range []string{"cgroup", "process-group"} {
		t.Run(containment, func(t *testing.T) {
			var log string
			for round := 1; round <= 3; round++ {
				var logged bool
				if logged, log = zombieRound(t, containment); logged {
					return
				}
				t.Logf("round %d: the next noded did not log the sleep's kill: another noded on this host may have killed it first", round)
			}
			t.Errorf("in three rounds, the next noded's log never named the sleep it killed; the last log:\n%s", log)
		})
	}
}

// zombieRound makes a zombie noded that left a sleep running, starts the
// next noded, and checks the sleep is gone once it listens. It reports
// whether the next noded's log names the sleep as one it killed, and
// returns that log.
func zombieRound(t *testing.T, containment string) (logged bool, log string) {
	state := t.TempDir()
	fns := t.TempDir()
	script := strings.ReplaceAll(leaveSleep, "STATE", state)
	if err := os.WriteFile(filepath.Join(fns, "leavesleep"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := nodetest.MarkerKey + "=zombie-" + containment + "-" + nodetest.RandomHex(8)
	t.Cleanup(func() {
		for _, pid := range nodetest.ProcessesWithEnv(marker) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %s of the SIGKILLed noded still runs at the end of the test", nodetest.Describe(pid))
		}
	})

	pred, addr := startUnreaped(t, marker, fns, "--containment", containment)
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+rpc.PathStartFunction, strings.NewReader(`{"fn_name":"leavesleep","timeout":0}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("starting leavesleep on the first noded: status %d; its log:\n%s", resp.StatusCode, readLog(pred))
	}
	sleepPID := awaitPIDFile(t, filepath.Join(state, "sleep"))

	if err := pred.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitState(t, pred.cmd.Process.Pid, 'Z')

	next := nodetest.Start(t, nodetest.Options{Flags: []string{"--containment", containment}})
	// The serving line comes after the address file Start waits for.
	next.AwaitLogLine(t, "noded serving", "containment="+containment)
	if !nodetest.AwaitGone(sleepPID, 5*time.Second) {
		t.Fatalf("the sleep %d of the SIGKILLed noded %d (a zombie) still runs 5s after the next noded listened", sleepPID, pred.cmd.Process.Pid)
	}
	// Under cgroups the sleep dies with its daemon's cgroup; under
	// process groups it is found by the daemon's mark in its environment.
	msg := "killed processes left by earlier daemons"
	if containment == "cgroup" {
		msg = "killed what was left of an earlier daemon's calls"
	}
	return loggedPID(next.Log(), msg, sleepPID), next.Log()
}

// pidsAttr is the list of PIDs of a log line, as slog's text handler
// writes a []int: pids=[7] or pids="[7 8]".
var pidsAttr = regexp.MustCompile(`pids="?\[([0-9 ]*)\]`)

// loggedPID reports whether a line of log with msg lists pid.
func loggedPID(log, msg string, pid int) bool {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, msg) {
			continue
		}
		if m := pidsAttr.FindStringSubmatch(line); m != nil && slices.Contains(strings.Fields(m[1]), strconv.Itoa(pid)) {
			return true
		}
	}
	return false
}

// unreaped is a noded whose exit this test never waits for until its
// cleanup: once it dies it stays a zombie, as under a parent that does
// not reap its children.
type unreaped struct {
	cmd *exec.Cmd
	log string
}

// startUnreaped starts noded with marker in its environment and the
// functions of fns, and returns once it listens.
func startUnreaped(t *testing.T, marker, fns string, flags ...string) (*unreaped, string) {
	t.Helper()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	u := &unreaped{log: filepath.Join(dir, "noded.log")}
	logFile, err := os.Create(u.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := append([]string{"--config=", "--insecure", "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--functions-dir", fns, "--warm", "0"}, flags...)
	u.cmd = exec.Command(nodetest.Noded(t), args...)
	u.cmd.Env = append(os.Environ(), marker)
	u.cmd.Stdout, u.cmd.Stderr = logFile, logFile
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.cmd.Process.Kill()
		u.cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling: noded writes the file, no event
		if b, err := os.ReadFile(addrFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return u, strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("noded %q did not listen within 30s; its log:\n%s", args, readLog(u))
		}
	}
}

// readLog returns what u wrote to stdout and stderr so far.
func readLog(u *unreaped) string {
	b, _ := os.ReadFile(u.log)
	return string(b)
}

// awaitPIDFile waits for a PID a function writes (by rename, whole).
func awaitPIDFile(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling: the function writes the file, no event
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PID in %s within 30s", path)
		}
	}
}

// awaitState waits until process pid is in state (Z: a zombie).
func awaitState(t *testing.T, pid int, state byte) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling /proc: no event
		if _, st, ok := nodetest.ProcStat(pid); ok && st == state {
			return
		}
		if time.Now().After(deadline) {
			_, st, _ := nodetest.ProcStat(pid)
			t.Fatalf("process %d in state %c 30s after SIGKILL, want %c", pid, st, state)
		}
	}
}
