package nodetest

import (
	"bytes"
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

// daemon is what [Node], [Masterd] and [Etcd] share: one daemon of a
// test, a binary run as a series of incarnations (one per start) that
// share a directory, a marker and an address, and the checks made when
// it is closed. The three differ only in their command lines and in how
// they tell that an incarnation is ready.
type daemon struct {
	name   string // "noded", "masterd", "etcd": in file names and messages
	bin    string
	dir    string // the daemon's files, logs included
	marker string // MarkerKey=value
	stop   time.Duration

	// sigtermEnds says the daemon ends on SIGTERM by killing itself with
	// it once its handlers ran (etcd): that end is as clean as status 0.
	sigtermEnds bool
	// keepLogsIn, when set, is where each incarnation's log is copied
	// when the daemon is closed.
	keepLogsIn string

	mu     sync.Mutex
	addr   string         // host:port of the first incarnation, kept by restarts
	incs   []*incarnation // oldest first; the last is the current one
	closed bool
}

// incarnation is one process of a daemon.
type incarnation struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited
	err  error         // its exit, once done is closed

	// seen is set once the test has been told of, or caused, the end
	// (Stop, Kill, Wait): an end nobody looked at is reported by Stop.
	seen bool
}

// newDaemon makes the directory of a daemon named name (a temporary
// directory whose name begins with dirPrefix) that runs bin and whose
// processes carry marker; Stop gives it stop after SIGTERM.
func newDaemon(name, bin, dirPrefix, marker string, stop time.Duration) (*daemon, error) {
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	return &daemon{name: name, bin: bin, dir: dir, marker: marker, stop: stop}, nil
}

// spawn starts a new incarnation with args and env (the marker is added)
// and waits for ready to say it is ready; ready kills it if it is not.
// Its stdout and stderr go straight to its log file, so that the log is
// complete even when this process dies first.
func (d *daemon) spawn(args, env []string, ready func(*incarnation) error) error {
	d.mu.Lock()
	k := len(d.incs)
	d.mu.Unlock()
	inc := &incarnation{log: filepath.Join(d.dir, fmt.Sprintf("%s-%d.log", d.name, k)), done: make(chan struct{})}
	logFile, err := os.Create(inc.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	inc.cmd = exec.Command(d.bin, args...)
	inc.cmd.Env = append(env, d.marker)
	inc.cmd.Stdout, inc.cmd.Stderr = logFile, logFile
	if err := inc.cmd.Start(); err != nil {
		return fmt.Errorf("nodetest: starting %s %q: %v", d.bin, args, err)
	}
	go func() {
		inc.err = inc.cmd.Wait()
		close(inc.done)
	}()
	d.mu.Lock()
	d.incs = append(d.incs, inc)
	d.mu.Unlock()
	if err := ready(inc); err != nil {
		d.see(inc)
		return fmt.Errorf("nodetest: %s %q: %v; its log:\n%s", d.name, args, err, tail(readFile(inc.log), 8<<10))
	}
	return nil
}

// addrFile is where a daemon of --addr-file writes the address it
// listens on.
func (d *daemon) addrFile() string { return filepath.Join(d.dir, "addr") }

// serveArgs begin the command line of a daemon that serves the noderpc
// API (noded, masterd): no configuration file, HTTPS with the files of
// tls or plain HTTP with --insecure, on listen, with --addr-file.
func (d *daemon) serveArgs(tls *TLS, listen string) []string {
	args := []string{"--config="}
	if tls != nil {
		args = append(args, "--cert", tls.Cert, "--key", tls.Key, "--client-ca", tls.ClientCA)
	} else {
		args = append(args, "--insecure")
	}
	return append(args, "--listen", listen, "--addr-file", d.addrFile())
}

// url returns the daemon's base URL: https://ADDR when it serves tls,
// else http://ADDR.
func (d *daemon) url(tls *TLS) string {
	if tls != nil {
		return "https://" + d.address()
	}
	return "http://" + d.address()
}

// listen spawns an incarnation whose command line has --addr-file
// [daemon.addrFile], waits until it listens and keeps the first address
// it listened on.
func (d *daemon) listen(args, env []string) error {
	os.Remove(d.addrFile())
	var addr string
	err := d.spawn(args, env, func(inc *incarnation) (err error) {
		addr, err = awaitAddr(d.addrFile(), inc)
		return err
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	if d.addr == "" {
		d.addr = addr
	}
	d.mu.Unlock()
	return nil
}

// awaitAddr polls for the address the daemon writes once it listens (by
// rename, whole, after its signal handlers are in place): it offers no
// other signal to wait on. If the daemon exits or the wait times out, it
// is killed and an error returned.
func awaitAddr(path string, inc *incarnation) (string, error) {
	deadline := time.Now().Add(startTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-inc.done:
			return "", fmt.Errorf("exited before listening: %v", inc.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			inc.cmd.Process.Kill()
			<-inc.done
			return "", fmt.Errorf("did not listen within %s", startTimeout)
		}
	}
}

// environ is this process's environment without a marker of its own, if
// it has one (a test run from a node's function): a daemon's processes
// carry the daemon's marker alone.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, MarkerKey+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// current returns the latest incarnation.
func (d *daemon) current() *incarnation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.incs[len(d.incs)-1]
}

// see records that the test knows how inc ended.
func (d *daemon) see(inc *incarnation) {
	d.mu.Lock()
	inc.seen = true
	d.mu.Unlock()
}

// address returns the host:port the daemon serves on.
func (d *daemon) address() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// pid returns the process ID of the latest incarnation.
func (d *daemon) pid() int { return d.current().cmd.Process.Pid }

// pids returns the process IDs of every incarnation, oldest first.
func (d *daemon) pids() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	pids := make([]int, len(d.incs))
	for i, inc := range d.incs {
		pids[i] = inc.cmd.Process.Pid
	}
	return pids
}

// running reports whether the latest incarnation is still running.
func (d *daemon) running() bool {
	select {
	case <-d.current().done:
		return false
	default:
		return true
	}
}

// log returns what the latest incarnation has written so far.
func (d *daemon) log() string { return readFile(d.current().log) }

// logFiles returns the log file of each incarnation, oldest first.
func (d *daemon) logFiles() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	files := make([]string, len(d.incs))
	for i, inc := range d.incs {
		files[i] = inc.log
	}
	return files
}

// logLine returns the first line of the latest incarnation's log that
// holds every one of parts.
func (d *daemon) logLine(parts ...string) (string, bool) {
	for line := range strings.Lines(d.log()) {
		if containsAll(line, parts) {
			return strings.TrimSpace(line), true
		}
	}
	return "", false
}

// awaitLogLine polls the latest incarnation's log until a line holds
// every one of parts, and returns it; the test fails after 20s.
func (d *daemon) awaitLogLine(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if line, ok := d.logLine(parts...); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s logged no line with %q within 20s; its log:\n%s", d.name, d.address(), parts, tail(d.log(), 8<<10))
		}
		time.Sleep(10 * time.Millisecond) // polling the log file, which has no event to wait on
	}
}

// signal sends sig to the latest incarnation. A SIGKILL counts as the
// end the test meant.
func (d *daemon) signal(sig syscall.Signal) error {
	inc := d.current()
	if sig == syscall.SIGKILL {
		d.see(inc)
	}
	if err := inc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("nodetest: kill -%v %d: %w", sig, inc.cmd.Process.Pid, err)
	}
	return nil
}

// wait waits up to timeout for the latest incarnation to exit, and
// returns its exit error: nil for status 0. Past timeout it kills it and
// returns an error saying so.
func (d *daemon) wait(timeout time.Duration) error {
	inc := d.current()
	select {
	case <-inc.done:
	case <-time.After(timeout):
		inc.cmd.Process.Kill()
		<-inc.done
		d.see(inc)
		return fmt.Errorf("nodetest: %s %s (pid %d) did not exit within %s; killed it", d.name, d.address(), inc.cmd.Process.Pid, timeout)
	}
	d.see(inc)
	return inc.err
}

// stopLatest stops the latest incarnation as an operator would: SIGCONT,
// in case the test froze it, then SIGTERM, and SIGKILL if it has not
// exited within d.stop. It returns an error if the daemon had to be
// killed or did not exit cleanly, and likewise if it had already exited
// by itself unnoticed (a crash). It is idempotent.
func (d *daemon) stopLatest() error {
	inc := d.current()
	select {
	case <-inc.done:
		d.mu.Lock()
		seen := inc.seen
		inc.seen = true
		d.mu.Unlock()
		if !seen && inc.err != nil {
			return fmt.Errorf("nodetest: %s %s (pid %d) exited by itself with %v", d.name, d.address(), inc.cmd.Process.Pid, inc.err)
		}
		return nil
	default:
	}
	inc.cmd.Process.Signal(syscall.SIGCONT)
	inc.cmd.Process.Signal(syscall.SIGTERM)
	err := d.wait(d.stop)
	if err == nil || d.sigtermEnds && terminated(err) {
		return nil
	}
	want := "exit status 0"
	if d.sigtermEnds {
		want += " or the signal"
	}
	return fmt.Errorf("nodetest: %s %s (pid %d) after SIGTERM: %w, want %s", d.name, d.address(), inc.cmd.Process.Pid, err, want)
}

// terminated reports whether err is the exit of a process ended by
// SIGTERM.
func terminated(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. It is idempotent.
func (d *daemon) kill() error {
	inc := d.current()
	d.see(inc)
	if err := inc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nodetest: killing %s %s: %w", d.name, d.address(), err)
	}
	<-inc.done
	return nil
}

// exited returns an error unless the latest incarnation has exited, and
// then counts its end as seen: a new one may start.
func (d *daemon) exited() error {
	if d.running() {
		return fmt.Errorf("nodetest: relaunch of %s %s, which is still running", d.name, d.address())
	}
	d.see(d.current())
	return nil
}

// shutdown stops the daemon, checks that no process carrying its marker
// outlives it and that the race detector reported nothing, once, and
// returns every problem it found.
func (d *daemon) shutdown() error {
	d.mu.Lock()
	closed := d.closed
	d.closed = true
	d.mu.Unlock()
	if closed {
		return nil
	}
	return errors.Join(d.stopLatest(), d.checkLeftovers(), d.checkRaces())
}

// closeFor closes d at the end of the test t, failing t on a problem.
// When t failed, d's files are kept, and the tail of its log logged if
// always is set or closing it went wrong; else they are removed.
func (d *daemon) closeFor(t testing.TB, always bool) {
	err := d.shutdown()
	if err != nil {
		t.Error(err)
	}
	d.keepLogs()
	if !t.Failed() {
		os.RemoveAll(d.dir)
		return
	}
	if always || err != nil {
		t.Logf("log of %s %s (pid %d), last incarnation:\n%s", d.name, d.address(), d.pid(), tail(d.log(), 16<<10))
	}
	t.Logf("the files of %s %s are kept in %s", d.name, d.address(), d.dir)
}

// keepLogs copies every incarnation's log into d.keepLogsIn, if set, as
// MARKER-NAME-PID.log.
func (d *daemon) keepLogs() {
	if d.keepLogsIn == "" {
		return
	}
	_, value, _ := strings.Cut(d.marker, "=")
	d.mu.Lock()
	incs := append([]*incarnation(nil), d.incs...)
	d.mu.Unlock()
	for _, inc := range incs {
		dst := filepath.Join(d.keepLogsIn, fmt.Sprintf("%s-%s-%d.log", value, d.name, inc.cmd.Process.Pid))
		os.WriteFile(dst, []byte(readFile(inc.log)), 0o644)
	}
}

// raceReport begins each report of the race detector on stderr.
const raceReport = "WARNING: DATA RACE"

// checkRaces returns an error if the race detector reported a data race
// in any incarnation. A daemon exits with status 66 after one, but one
// the test killed never exits by itself: its log tells all the same.
func (d *daemon) checkRaces() error {
	var errs []error
	for _, path := range d.logFiles() {
		if log := readFile(path); strings.Contains(log, raceReport) {
			errs = append(errs, fmt.Errorf("nodetest: the race detector found %d data races in %s %s; its log %s:\n%s",
				strings.Count(log, raceReport), d.name, d.address(), path, raceReports(log)))
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

// checkLeftovers waits a few seconds for every process with the
// daemon's marker to end (a parent-death signal is delivered
// asynchronously), then kills those still running, so that one failure
// does not leak into the rest of the run, and returns an error naming
// them.
func (d *daemon) checkLeftovers() error {
	left := awaitNone(func() []int { return ProcessesWithEnv(d.marker) }, 10*time.Second)
	if len(left) == 0 {
		return nil
	}
	described := make([]string, len(left))
	for i, pid := range left {
		described[i] = Describe(pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("nodetest: processes of %s %s (%s) still running after it stopped:\n  %s",
		d.name, d.address(), d.marker, strings.Join(described, "\n  "))
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
