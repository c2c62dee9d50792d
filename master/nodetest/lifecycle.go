package nodetest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// Signal sends sig to the latest incarnation (not to its functions). A
// SIGKILL counts as the end the test meant, as with [Node.Kill].
func (n *Node) Signal(sig syscall.Signal) error {
	inc := n.current()
	if sig == syscall.SIGKILL {
		n.mu.Lock()
		inc.seen = true
		n.mu.Unlock()
	}
	if err := inc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("nodetest: kill -%v %d: %w", sig, inc.cmd.Process.Pid, err)
	}
	return nil
}

// Wait waits up to timeout for the latest incarnation to exit, and
// returns its exit error: nil for status 0. Past timeout it kills it and
// returns an error saying so.
func (n *Node) Wait(timeout time.Duration) error {
	inc := n.current()
	select {
	case <-inc.done:
	case <-time.After(timeout):
		inc.cmd.Process.Kill()
		<-inc.done
		n.see(inc)
		return fmt.Errorf("nodetest: noded %s (pid %d) did not exit within %s; killed it", n.Addr(), inc.cmd.Process.Pid, timeout)
	}
	n.see(inc)
	return inc.err
}

// see records that the test knows how inc ended.
func (n *Node) see(inc *incarnation) {
	n.mu.Lock()
	inc.seen = true
	n.mu.Unlock()
}

// Stop stops the latest incarnation as an operator would: SIGCONT, in
// case the test froze it, then SIGTERM, and SIGKILL if it has not exited
// within its --shutdown-grace and 30s. It returns an error if noded had
// to be killed or did not exit with status 0, and likewise if it had
// already exited by itself unnoticed (a crash). Stop is idempotent.
func (n *Node) Stop() error {
	inc := n.current()
	select {
	case <-inc.done:
		n.mu.Lock()
		seen := inc.seen
		inc.seen = true
		n.mu.Unlock()
		if !seen && inc.err != nil {
			return fmt.Errorf("nodetest: noded %s (pid %d) exited by itself with %v", n.Addr(), inc.cmd.Process.Pid, inc.err)
		}
		return nil
	default:
	}
	inc.cmd.Process.Signal(syscall.SIGCONT)
	inc.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.Wait(n.stop); err != nil {
		return fmt.Errorf("nodetest: noded %s (pid %d) after SIGTERM: %w, want exit status 0", n.Addr(), inc.cmd.Process.Pid, err)
	}
	return nil
}

// Kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. Its function processes are left to their parent-death
// signal, and their children to the next noded; [Node.Close] checks that
// none is left. Kill is idempotent.
func (n *Node) Kill() error {
	inc := n.current()
	n.see(inc)
	if err := inc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nodetest: killing noded %s: %w", n.Addr(), err)
	}
	<-inc.done
	return nil
}

// Restart stops the node with [Node.Stop] and starts a new incarnation
// on the same address, as an operator restarting the daemon would: the
// new daemon has a new boot id and none of the old one's calls.
func (n *Node) Restart() error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.start(n.Addr())
}

// Relaunch starts a new incarnation of a node that was killed or has
// exited, on the same address, as a supervisor restarting a crashed
// daemon would.
func (n *Node) Relaunch() error {
	if n.Running() {
		return fmt.Errorf("nodetest: relaunch of noded %s, which is still running", n.Addr())
	}
	n.see(n.current())
	return n.start(n.Addr())
}

// Close stops the node ([Node.Stop]), checks that no process carrying
// its marker outlives it (killing any it finds), copies its logs if
// Options.KeepLogsIn says so, and removes its files. It returns every
// problem it found.
func (n *Node) Close() error {
	err := n.shutdown()
	n.keepLogs()
	os.RemoveAll(n.dir)
	return err
}

// shutdown is Close but for the files, once.
func (n *Node) shutdown() error {
	n.mu.Lock()
	closed := n.closed
	n.closed = true
	n.mu.Unlock()
	if closed {
		return nil
	}
	buildMu.Lock()
	delete(launched, n)
	buildMu.Unlock()
	return errors.Join(n.Stop(), n.checkLeftovers(), n.checkRaces())
}

// raceReport begins each report of the race detector on stderr.
const raceReport = "WARNING: DATA RACE"

// checkRaces returns an error if the race detector reported a data race
// in any incarnation. noded exits with status 66 after one, but a node
// the test killed never exits by itself: its log tells all the same.
func (n *Node) checkRaces() error {
	var errs []error
	for _, path := range n.LogFiles() {
		if log := readFile(path); strings.Contains(log, raceReport) {
			errs = append(errs, fmt.Errorf("nodetest: the race detector found %d data races in noded %s; its log %s:\n%s",
				strings.Count(log, raceReport), n.Addr(), path, raceReports(log)))
		}
	}
	return errors.Join(errs...)
}

// raceReports returns the race detector's reports in log, each from its
// WARNING line to the rule that closes it, without the lines around them.
func raceReports(log string) string {
	var b strings.Builder
	in := false
	for line := range strings.Lines(log) {
		switch {
		case strings.Contains(line, raceReport):
			in = true
		case in && strings.HasPrefix(line, "=================="):
			in = false
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// checkLeftovers waits a few seconds for every process with the node's
// marker to end (a parent-death signal is delivered asynchronously),
// then kills those still running, so that one failure does not leak into
// the rest of the run, and returns an error naming them.
func (n *Node) checkLeftovers() error {
	left := awaitNone(n.Processes, 10*time.Second)
	if len(left) == 0 {
		return nil
	}
	described := make([]string, len(left))
	for i, pid := range left {
		described[i] = Describe(pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("nodetest: processes of noded %s (%s) still running after it stopped:\n  %s",
		n.Addr(), n.marker, strings.Join(described, "\n  "))
}

// awaitNone polls list until it is empty or d has passed, and returns
// its last answer.
func awaitNone(list func() []int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := list()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: another process's end sends no event
	}
}
