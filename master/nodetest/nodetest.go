// Package nodetest runs real noded processes for tests of code that talks
// to them: the master client, the noderpc CLI, and a master daemon's own
// tests.
//
// A test binary builds the binaries once in TestMain with [Build], then
// each test starts the nodes it needs with [Start]. A node listens on a
// free loopback port and lives as long as the test: its cleanup stops it
// and fails the test if it, or any function process it started, is still
// running afterwards.
package nodetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the Go packages pkgs (import paths, e.g.
// "github.com/noderpc/noderpc/noded/cmd/noded") into dir, each binary
// named after the last element of its path, and returns their paths in
// the order of pkgs. It runs from the current directory, which inside a
// test is the package's, so the module being tested is the one built.
func Build(dir string, pkgs ...string) ([]string, error) {
	var paths []string
	for _, pkg := range pkgs {
		out := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		paths = append(paths, out)
	}
	return paths, nil
}

// Node is one noded process.
type Node struct {
	// Addr is the host:port the node serves on.
	Addr string
	// Args are the flags it was started with, so Restart can repeat them.
	Args []string

	bin    string
	dir    string
	tls    *TLS // nil: --insecure
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncWriter
}

// StartTimeout bounds how long a node may take to start listening.
const StartTimeout = 20 * time.Second

// Start runs the noded binary bin (see [Launch]) for the test t; the
// test's cleanup stops it and fails the test if anything is left running.
func Start(t testing.TB, bin string, args ...string) *Node {
	t.Helper()
	n, err := Launch(bin, t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// Launch runs the noded binary bin with --insecure, --listen 127.0.0.1:0,
// --addr-file in dir and the extra flags args, waits until it listens, and
// returns it. The caller must Stop it.
func Launch(bin, dir string, args ...string) (*Node, error) {
	return launch(bin, dir, nil, args)
}

// TLS names the files a node serves HTTPS with: its --cert, --key and
// --client-ca.
type TLS struct {
	Cert, Key, ClientCA string
}

// StartTLS is [Start] for a node serving HTTPS with the files of tls
// instead of plain HTTP.
func StartTLS(t testing.TB, bin string, tls TLS, args ...string) *Node {
	t.Helper()
	n, err := LaunchTLS(bin, t.TempDir(), tls, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// LaunchTLS is [Launch] for a node serving HTTPS with the files of tls.
func LaunchTLS(bin, dir string, tls TLS, args ...string) (*Node, error) {
	return launch(bin, dir, &tls, args)
}

func launch(bin, dir string, tls *TLS, args []string) (*Node, error) {
	n := &Node{bin: bin, dir: dir, tls: tls, Args: args}
	if err := n.start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) start(listen string) error {
	addrFile := filepath.Join(n.dir, "addr")
	os.Remove(addrFile)
	mode := []string{"--insecure"}
	if n.tls != nil {
		mode = []string{"--cert", n.tls.Cert, "--key", n.tls.Key, "--client-ca", n.tls.ClientCA}
	}
	args := append(append(mode, "--listen", listen, "--addr-file", addrFile), n.Args...)
	cmd := exec.Command(n.bin, args...)
	stderr := &syncWriter{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", n.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited, n.stderr = cmd, exited, stderr
	n.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	for {
		if b, err := os.ReadFile(addrFile); err == nil {
			n.Addr = strings.TrimSpace(string(b))
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("noded %q exited before listening: %v\n%s", args, cmd.ProcessState, n.Stderr())
		case <-time.After(10 * time.Millisecond):
			// Polling the address file: noded writes it atomically once
			// it listens, and offers no other signal to wait on.
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("noded %q did not listen within %s\n%s", args, StartTimeout, n.Stderr())
		}
	}
}

// PID returns the process ID of the running noded.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Signal sends sig to the noded process (not to its functions).
func (n *Node) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(n.PID(), sig); err != nil {
		return fmt.Errorf("kill -%v %d: %v", sig, n.PID(), err)
	}
	return nil
}

// Stderr returns what noded has logged so far.
func (n *Node) Stderr() string {
	n.mu.Lock()
	w := n.stderr
	n.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Restart stops the node and starts it again on the same address, as an
// operator restarting the daemon would: the new daemon has a new boot id
// and none of the old one's calls.
func (n *Node) Restart() error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.start(n.Addr)
}

// Relaunch starts a node that was killed or stopped again on the same
// address, as a supervisor restarting a crashed daemon would.
func (n *Node) Relaunch() error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	select {
	case <-exited:
	default:
		return fmt.Errorf("nodetest: relaunch of noded %s, which is still running", n.Addr)
	}
	return n.start(n.Addr)
}

// Stop stops the node as an operator would, with SIGTERM, after a SIGCONT
// in case a test stopped it; SIGKILL follows if it has not exited within
// 30s. It returns an error if the node had to be killed, or if any
// function process it had started outlived it. Stop is idempotent.
func (n *Node) Stop() error {
	return n.end(syscall.SIGTERM, 30*time.Second)
}

// Kill kills the node with SIGKILL, as a crash would, and waits for it to
// exit. It returns an error if any of its function processes outlives it
// (they should die of their parent-death signal).
func (n *Node) Kill() error {
	return n.end(syscall.SIGKILL, 0)
}

func (n *Node) end(sig syscall.Signal, grace time.Duration) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	select {
	case <-exited:
		return nil
	default:
	}
	children := childrenOf(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(sig)
	var errs []error
	select {
	case <-exited:
	case <-time.After(grace + 5*time.Second):
		cmd.Process.Kill()
		<-exited
		errs = append(errs, fmt.Errorf("noded %s did not exit within %s of %v; killed\n%s", n.Addr, grace+5*time.Second, sig, n.Stderr()))
	}
	if left := alive(children, 10*time.Second); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		errs = append(errs, fmt.Errorf("function processes %v of noded %s outlived it", left, n.Addr))
	}
	return errors.Join(errs...)
}

// alive returns those of pids that are still running (zombies count as
// gone) after waiting up to d for them to end: a parent-death signal is
// delivered asynchronously.
func alive(pids []int, d time.Duration) []int {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		var left []int
		for _, pid := range pids {
			if Running(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || ctx.Err() != nil {
			return left
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
			// Polling /proc: there is no event for another process's end.
		}
	}
}

// syncWriter lets the test read noded's stderr while exec copies to it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}
