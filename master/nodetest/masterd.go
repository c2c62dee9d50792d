package nodetest

import (
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

// MasterdPackage is the import path of masterd, built by [StartMasterd].
const MasterdPackage = "github.com/noderpc/noderpc/master/cmd/masterd"

// MasterdOptions say how to run a masterd. The zero value runs it with
// --insecure on 127.0.0.1:0 with a state directory of its own.
type MasterdOptions struct {
	// Binary is the daemon to run; empty means masterd built by [Binary].
	Binary string
	// Flags are more command-line flags, given after the harness's own
	// (--config=, --insecure or the TLS files, --listen, --addr-file,
	// --state-dir), so that the last of a repeated flag wins.
	Flags []string
	// TLS, when set, serves HTTPS with these files (a master
	// certificate) instead of plain HTTP with --insecure.
	TLS *TLS
	// Listen is the address of the first start; empty means
	// 127.0.0.1:0. Restarts keep the address first served on.
	Listen string
	// Env are "KEY=value" entries added to the test's environment.
	Env []string
}

// Masterd is one masterd of a test, restartable on the same address and
// over the same state directory.
type Masterd struct {
	opts   MasterdOptions
	bin    string
	dir    string // state/, addr, logs
	marker string
	addr   string

	mu     sync.Mutex
	incs   []*incarnation
	closed bool
}

// StartMasterd starts a masterd for the test t, waits until it listens
// and returns it. The test's cleanup stops it, fails the test if it did
// not exit cleanly, outlived its stop, or its race detector reported a
// race, and logs the tail of its log when the test failed.
func StartMasterd(t testing.TB, opts MasterdOptions) *Masterd {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Binary(t, MasterdPackage)
	}
	dir, err := os.MkdirTemp("", "masterd-"+clip(Sanitize(t.Name()), 60)+"-")
	if err != nil {
		t.Fatal(err)
	}
	m := &Masterd{opts: opts, bin: opts.Binary, dir: dir, marker: MarkerKey + "=masterd-" + RandomHex(8)}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if err := m.start(listen); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
			return
		}
		t.Logf("log of masterd %s (pid %d), last incarnation:\n%s", m.Addr(), m.PID(), tail(m.Log(), 16<<10))
		t.Logf("the files of masterd %s are kept in %s", m.Addr(), dir)
	})
	return m
}

// StateDir is masterd's --state-dir, kept across restarts.
func (m *Masterd) StateDir() string { return filepath.Join(m.dir, "state") }

func (m *Masterd) start(listen string) error {
	addrFile := filepath.Join(m.dir, "addr")
	os.Remove(addrFile)
	m.mu.Lock()
	k := len(m.incs)
	m.mu.Unlock()
	inc := &incarnation{log: filepath.Join(m.dir, fmt.Sprintf("masterd-%d.log", k)), done: make(chan struct{})}
	logFile, err := os.Create(inc.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{"--config="}
	if t := m.opts.TLS; t != nil {
		args = append(args, "--cert", t.Cert, "--key", t.Key, "--client-ca", t.ClientCA)
	} else {
		args = append(args, "--insecure")
	}
	args = append(args, "--listen", listen, "--addr-file", addrFile, "--state-dir", m.StateDir())
	args = append(args, m.opts.Flags...)
	inc.cmd = exec.Command(m.bin, args...)
	inc.cmd.Env = append(append(environ(), m.opts.Env...), m.marker)
	inc.cmd.Stdout, inc.cmd.Stderr = logFile, logFile
	if err := inc.cmd.Start(); err != nil {
		return fmt.Errorf("nodetest: starting %s %q: %v", m.bin, args, err)
	}
	go func() {
		inc.err = inc.cmd.Wait()
		close(inc.done)
	}()
	m.mu.Lock()
	m.incs = append(m.incs, inc)
	m.mu.Unlock()
	addr, err := awaitAddr(addrFile, inc)
	if err != nil {
		m.see(inc)
		return fmt.Errorf("nodetest: masterd %q: %v; its log:\n%s", args, err, tail(readFile(inc.log), 8<<10))
	}
	m.mu.Lock()
	if m.addr == "" {
		m.addr = addr
	}
	m.mu.Unlock()
	return nil
}

func (m *Masterd) current() *incarnation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.incs[len(m.incs)-1]
}

func (m *Masterd) see(inc *incarnation) {
	m.mu.Lock()
	inc.seen = true
	m.mu.Unlock()
}

// Addr returns the host:port masterd serves on, the same for every
// incarnation.
func (m *Masterd) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// URL returns masterd's base URL, what a noded's --master takes.
func (m *Masterd) URL() string {
	if m.opts.TLS != nil {
		return "https://" + m.Addr()
	}
	return "http://" + m.Addr()
}

// PID returns the process ID of the latest incarnation.
func (m *Masterd) PID() int { return m.current().cmd.Process.Pid }

// Log returns what the latest incarnation has written so far.
func (m *Masterd) Log() string { return readFile(m.current().log) }

// LogLine returns the first line of the latest incarnation's log that
// holds every one of parts.
func (m *Masterd) LogLine(parts ...string) (string, bool) {
	for line := range strings.Lines(m.Log()) {
		if containsAll(line, parts) {
			return strings.TrimSpace(line), true
		}
	}
	return "", false
}

// AwaitLogLine polls the latest incarnation's log until a line holds
// every one of parts, and returns it; the test fails after 20s.
func (m *Masterd) AwaitLogLine(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if line, ok := m.LogLine(parts...); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("masterd %s logged no line with %q within 20s; its log:\n%s", m.Addr(), parts, tail(m.Log(), 8<<10))
		}
		time.Sleep(10 * time.Millisecond) // polling the log file, which has no event to wait on
	}
}

// Signal sends sig to the latest incarnation. A SIGKILL counts as the
// end the test meant.
func (m *Masterd) Signal(sig syscall.Signal) error {
	inc := m.current()
	if sig == syscall.SIGKILL {
		m.see(inc)
	}
	if err := inc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("nodetest: kill -%v %d: %w", sig, inc.cmd.Process.Pid, err)
	}
	return nil
}

// Kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. It is idempotent.
func (m *Masterd) Kill() error {
	inc := m.current()
	m.see(inc)
	if err := inc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nodetest: killing masterd %s: %w", m.Addr(), err)
	}
	<-inc.done
	return nil
}

// Stop stops the latest incarnation with SIGCONT and SIGTERM, and
// SIGKILL after 30s; it returns an error unless masterd exited with
// status 0, or if it had exited by itself unnoticed. It is idempotent.
func (m *Masterd) Stop() error {
	inc := m.current()
	select {
	case <-inc.done:
		m.mu.Lock()
		seen := inc.seen
		inc.seen = true
		m.mu.Unlock()
		if !seen && inc.err != nil {
			return fmt.Errorf("nodetest: masterd %s (pid %d) exited by itself with %v", m.Addr(), inc.cmd.Process.Pid, inc.err)
		}
		return nil
	default:
	}
	inc.cmd.Process.Signal(syscall.SIGCONT)
	inc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-inc.done:
	case <-time.After(30 * time.Second):
		inc.cmd.Process.Kill()
		<-inc.done
		m.see(inc)
		return fmt.Errorf("nodetest: masterd %s (pid %d) did not exit within 30s of SIGTERM; killed it", m.Addr(), inc.cmd.Process.Pid)
	}
	m.see(inc)
	if inc.err != nil {
		return fmt.Errorf("nodetest: masterd %s (pid %d) after SIGTERM: %v, want exit status 0", m.Addr(), inc.cmd.Process.Pid, inc.err)
	}
	return nil
}

// Restart stops masterd ([Masterd.Stop]) and starts a new incarnation on
// the same address and state directory.
func (m *Masterd) Restart() error {
	if err := m.Stop(); err != nil {
		return err
	}
	return m.start(m.Addr())
}

// Relaunch starts a new incarnation of a masterd that was killed or has
// exited, on the same address and state directory.
func (m *Masterd) Relaunch() error {
	inc := m.current()
	select {
	case <-inc.done:
	default:
		return fmt.Errorf("nodetest: relaunch of masterd %s, which is still running", m.Addr())
	}
	m.see(inc)
	return m.start(m.Addr())
}

// Close stops masterd, checks that no process of it outlives it and that
// the race detector reported nothing in any incarnation's log. It is
// idempotent and returns every problem it found.
func (m *Masterd) Close() error {
	m.mu.Lock()
	closed := m.closed
	m.closed = true
	m.mu.Unlock()
	if closed {
		return nil
	}
	errs := []error{m.Stop()}
	if left := awaitNone(func() []int { return ProcessesWithEnv(m.marker) }, 10*time.Second); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		errs = append(errs, fmt.Errorf("nodetest: processes of masterd %s still running after it stopped: %v", m.Addr(), left))
	}
	m.mu.Lock()
	incs := append([]*incarnation(nil), m.incs...)
	m.mu.Unlock()
	for _, inc := range incs {
		if log := readFile(inc.log); strings.Contains(log, raceReport) {
			errs = append(errs, fmt.Errorf("nodetest: the race detector found data races in masterd %s; its log %s:\n%s", m.Addr(), inc.log, raceReports(log)))
		}
	}
	return errors.Join(errs...)
}
