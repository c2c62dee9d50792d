package nodetest

import (
	"os"
	"syscall"
	"time"
)

// Signal sends sig to the latest incarnation (not to its functions). A
// SIGKILL counts as the end the test meant, as with [Node.Kill].
func (n *Node) Signal(sig syscall.Signal) error { return n.signal(sig) }

// Wait waits up to timeout for the latest incarnation to exit, and
// returns its exit error: nil for status 0. Past timeout it kills it and
// returns an error saying so.
func (n *Node) Wait(timeout time.Duration) error { return n.wait(timeout) }

// Stop stops the latest incarnation as an operator would: SIGCONT, in
// case the test froze it, then SIGTERM, and SIGKILL if it has not exited
// within its --shutdown-grace and 30s. It returns an error if noded had
// to be killed or did not exit with status 0, and likewise if it had
// already exited by itself unnoticed (a crash). Stop is idempotent.
func (n *Node) Stop() error { return n.stopLatest() }

// Kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. Its function processes are left to their parent-death
// signal, and their children to the next noded; [Node.Close] checks that
// none is left. Kill is idempotent.
func (n *Node) Kill() error { return n.kill() }

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
	if err := n.exited(); err != nil {
		return err
	}
	return n.start(n.Addr())
}

// Close stops the node ([Node.Stop]), checks that no process carrying
// its marker outlives it (killing any it finds), copies its logs if
// Options.KeepLogsIn says so, and removes its files. It returns every
// problem it found.
func (n *Node) Close() error {
	buildMu.Lock()
	delete(launched, n)
	buildMu.Unlock()
	err := n.shutdown()
	n.keepLogs()
	os.RemoveAll(n.dir)
	return err
}
