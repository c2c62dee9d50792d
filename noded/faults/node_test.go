//go:build fault

package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
)

// markerKey is the environment variable that carries a scenario's marker.
// noded hands its environment down to every function process, and they to
// theirs, so a scan of /proc for the marker finds everything a scenario
// started, grandchildren that left the process group included.
const markerKey = "NODERPC_FAULT_MARKER"

// node is one noded of a scenario, restartable on the same address. All
// its incarnations share the scenario's marker, state directory and
// functions directory.
type node struct {
	t      *testing.T
	dir    string
	fnDir  string
	state  string // @STATE@ of the scripts: runs/ and pids/
	marker string
	flags  []string
	warm   int    // --warm: warm Go function processes noded keeps when idle
	addr   string // host:port, the same for every incarnation

	mu   sync.Mutex
	cur  *incarnation
	pids []int // every noded PID of the scenario, oldest first
}

// incarnation is one noded process.
type incarnation struct {
	cmd     *exec.Cmd
	pid     int
	logPath string
	done    chan struct{} // closed once the process has exited
	err     error         // its exit, once done is closed
}

// startNode starts noded with the scenario's scripts and the extra flags;
// the test's cleanup stops it and checks that nothing with the marker is
// left running.
func startNode(t *testing.T, flags ...string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{
		t:      t,
		dir:    dir,
		fnDir:  filepath.Join(dir, "functions"),
		state:  filepath.Join(dir, "state"),
		marker: nodetest.Sanitize(t.Name()) + "-" + nodetest.RandomHex(6),
		flags:  flags,
		warm:   4, // noded's default
	}
	for i, f := range flags {
		if f == "--warm" && i+1 < len(flags) {
			w, err := strconv.Atoi(flags[i+1])
			if err != nil {
				t.Fatalf("bad --warm %q: %v", flags[i+1], err)
			}
			n.warm = w
		}
	}
	for _, d := range []string{n.fnDir, filepath.Join(n.state, "runs"), filepath.Join(n.state, "pids")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.installScripts()
	if err := n.launch("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	return n
}

// installScripts copies testdata/functions into the functions directory
// with @STATE@ replaced by the scenario's state directory.
func (n *node) installScripts() {
	entries, err := os.ReadDir(filepath.Join("testdata", "functions"))
	if err != nil {
		n.t.Fatal(err)
	}
	// A file still open for writing cannot be executed (ETXTBSY), and a
	// fork elsewhere in this process would inherit the descriptor until
	// its exec: hold off forks while writing.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	for _, e := range entries {
		src, err := os.ReadFile(filepath.Join("testdata", "functions", e.Name()))
		if err != nil {
			n.t.Fatal(err)
		}
		text := strings.ReplaceAll(string(src), "@STATE@", n.state)
		if err := os.WriteFile(filepath.Join(n.fnDir, e.Name()), []byte(text), 0o755); err != nil {
			n.t.Fatal(err)
		}
	}
}

// launch starts an incarnation listening on listen and waits until it
// serves.
func (n *node) launch(listen string) error {
	addrFile := filepath.Join(n.dir, "addr")
	os.Remove(addrFile)
	k := len(n.PIDs())
	inc := &incarnation{logPath: filepath.Join(n.dir, fmt.Sprintf("noded-%d.log", k)), done: make(chan struct{})}
	logFile, err := os.Create(inc.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := append([]string{"--insecure", "--listen", listen, "--addr-file", addrFile, "--functions-dir", n.fnDir}, n.flags...)
	inc.cmd = exec.Command(nodedBin, args...)
	inc.cmd.Env = append(os.Environ(), markerKey+"="+n.marker)
	inc.cmd.Stdout, inc.cmd.Stderr = logFile, logFile
	if err := inc.cmd.Start(); err != nil {
		return fmt.Errorf("starting noded %q: %v", args, err)
	}
	inc.pid = inc.cmd.Process.Pid
	go func() {
		inc.err = inc.cmd.Wait()
		close(inc.done)
	}()
	n.mu.Lock()
	n.cur = inc
	n.pids = append(n.pids, inc.pid)
	n.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			n.addr = strings.TrimSpace(string(b))
			return nil
		}
		select {
		case <-inc.done:
			return fmt.Errorf("noded %q exited before listening (%v):\n%s", args, inc.err, readFile(inc.logPath))
		case <-time.After(5 * time.Millisecond):
			// Polling the address file: noded writes it atomically once it
			// listens, and offers no other signal to wait on.
		}
		if time.Now().After(deadline) {
			inc.cmd.Process.Kill()
			<-inc.done
			return fmt.Errorf("noded %q did not listen within 20s:\n%s", args, readFile(inc.logPath))
		}
	}
}

// PID is the running incarnation's PID.
func (n *node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur.pid
}

// PIDs lists every incarnation's PID, oldest first.
func (n *node) PIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]int(nil), n.pids...)
}

// signal sends sig to the running incarnation.
func (n *node) signal(sig syscall.Signal) {
	n.t.Helper()
	if err := syscall.Kill(n.PID(), sig); err != nil {
		n.t.Fatalf("kill -%v %d: %v", sig, n.PID(), err)
	}
}

// kill SIGKILLs the running incarnation, as a crash would, and waits for it.
func (n *node) kill() {
	n.t.Helper()
	n.mu.Lock()
	inc := n.cur
	n.mu.Unlock()
	inc.cmd.Process.Signal(syscall.SIGCONT)
	inc.cmd.Process.Kill()
	<-inc.done
}

// relaunch starts a new incarnation on the same address, as a supervisor
// restarting a crashed daemon would.
func (n *node) relaunch() {
	n.t.Helper()
	if err := n.launch(n.addr); err != nil {
		n.t.Fatal(err)
	}
}

// terminate stops the running incarnation with SIGTERM (after a SIGCONT in
// case it is frozen) and checks that it exits 0 within its grace.
func (n *node) terminate() {
	n.t.Helper()
	n.mu.Lock()
	inc := n.cur
	n.mu.Unlock()
	select {
	case <-inc.done:
		return
	default:
	}
	inc.cmd.Process.Signal(syscall.SIGCONT)
	inc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-inc.done:
		if inc.err != nil {
			n.t.Errorf("noded (pid %d) exited with %v after SIGTERM, want status 0; its log:\n%s", inc.pid, inc.err, tail(readFile(inc.logPath), 4000))
		}
	case <-time.After(40 * time.Second):
		inc.cmd.Process.Kill()
		<-inc.done
		n.t.Errorf("noded (pid %d) did not exit within 40s of SIGTERM; killed. Its log:\n%s", inc.pid, tail(readFile(inc.logPath), 4000))
	}
}

// cleanup stops noded and fails the test if anything with the marker
// outlives it; what it finds it kills, so one failure does not leak into
// the next scenario.
func (n *node) cleanup() {
	n.terminate()
	left, _ := n.waitNoLeftovers(10 * time.Second)
	if len(left) > 0 {
		n.t.Errorf("processes of scenario %s still running after noded exited:\n  %s", n.marker, strings.Join(describeAll(left), "\n  "))
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if dir := os.Getenv("NODERPC_FAULT_KEEP_LOGS"); dir != "" {
		for i, pid := range n.PIDs() {
			data, _ := os.ReadFile(filepath.Join(n.dir, fmt.Sprintf("noded-%d.log", i)))
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-noded-%d.log", n.marker, pid)), data, 0o644)
		}
	}
	if n.t.Failed() {
		n.mu.Lock()
		inc := n.cur
		n.mu.Unlock()
		n.t.Logf("log of the last noded (pid %d):\n%s", inc.pid, tail(readFile(inc.logPath), 8000))
	}
}

// leftovers lists the live processes with the scenario's marker that are
// neither the running noded nor one of its warm Go function processes
// (children running noded's own binary, which wait for a call): what is
// left of calls that have ended or of a daemon that died.
func (n *node) leftovers() []int {
	n.mu.Lock()
	cur := n.cur
	n.mu.Unlock()
	running := false
	select {
	case <-cur.done:
	default:
		running = true
	}
	var left []int
	for _, pid := range nodetest.ProcessesWithEnv(markerKey + "=" + n.marker) {
		if running && pid == cur.pid {
			continue
		}
		if running {
			if ppid, _, ok := nodetest.ProcStat(pid); ok && ppid == cur.pid && isExe(pid, nodedBin) {
				continue // a warm process of the running daemon
			}
		}
		left = append(left, pid)
	}
	return left
}

// survivors lists the live processes with the scenario's marker that do
// not descend from the running noded: what is left of daemons that died.
// Unlike leftovers it leaves alone the calls the running noded has in
// hand, so it can be used while the load goes on.
func (n *node) survivors() []int {
	cur := n.PID()
	var out []int
	for _, pid := range nodetest.ProcessesWithEnv(markerKey + "=" + n.marker) {
		if pid != cur && !descendsFrom(pid, cur) {
			out = append(out, pid)
		}
	}
	return out
}

// waitNoSurvivors polls until no survivor is found or d passes, and
// returns the survivors of the last look.
func (n *node) waitNoSurvivors(d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := n.survivors()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: another process's end sends no event
	}
}

// descendsFrom reports whether ancestor is pid's parent, or its parent's,
// and so on up to PID 1.
func descendsFrom(pid, ancestor int) bool {
	for range 64 { // deeper trees than this are not made by the scripts
		ppid, _, ok := nodetest.ProcStat(pid)
		if !ok || ppid <= 1 {
			return false
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}

// waitNoLeftovers polls until no leftover process is found or d passes,
// and returns the leftovers of the last look and the zombies among the
// PIDs the scripts recorded.
func (n *node) waitNoLeftovers(d time.Duration) (left, zombies []int) {
	deadline := time.Now().Add(d)
	for {
		left = n.leftovers()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: another process's end sends no event
	}
	for _, pid := range n.recordedPIDs() {
		if _, state, ok := nodetest.ProcStat(pid); ok && state == 'Z' {
			zombies = append(zombies, pid)
		}
	}
	return left, zombies
}

// recordedPIDs returns every PID the scripts wrote to state/pids.
func (n *node) recordedPIDs() []int {
	entries, _ := os.ReadDir(filepath.Join(n.state, "pids"))
	var pids []int
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.state, "pids", e.Name()))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// run is one run of the work function: the noded that started it and the
// script's PID.
type run struct{ noded, pid int }

// runs returns the runs recorded for token.
func (n *node) runs(token string) []run {
	b, err := os.ReadFile(filepath.Join(n.state, "runs", token))
	if err != nil {
		return nil
	}
	var out []run
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r run
		if _, err := fmt.Sscan(sc.Text(), &r.noded, &r.pid); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// usage is noded's use of the machine at one moment.
type usage struct {
	fds, threads, goroutines int
	rss                      int64 // bytes
	heapInuse, heapIdle      int64 // Go heap spans in use, and idle but not returned to the OS
}

func (u usage) String() string {
	return fmt.Sprintf("%d/%d/%d/%.1fMiB", u.fds, u.threads, u.goroutines, float64(u.rss)/(1<<20))
}

// metricsClient scrapes /metrics on a connection of its own that is
// closed after each scrape, so the scrape leaves no descriptor behind.
var metricsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// metrics returns the numeric value of each unlabelled sample of noded's
// /metrics, and of labelled ones under their full name.
func (n *node) metrics() (map[string]float64, error) {
	resp, err := metricsClient.Get("http://" + n.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64)
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(strings.TrimSpace(line), ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// usage samples noded's descriptors, threads and RSS from /proc and its
// goroutines from /metrics.
func (n *node) usage() (usage, error) {
	pid := n.PID()
	var u usage
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, err
	}
	u.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			u.threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			u.rss = kb << 10
		}
	}
	m, err := n.metrics()
	if err != nil {
		return u, err
	}
	u.goroutines = int(m["go_goroutines"])
	u.heapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	u.heapIdle = int64(m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"])
	return u, nil
}

// idle waits until noded runs no call, its warm pool is full and no
// leftover process is around, then until its descriptors are back to want
// (when want > 0), and
// returns its usage then. The descriptor count is polled because
// connections the client just closed take a moment to be closed on
// noded's side too.
func (n *node) idle(want int) usage {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var (
		u    usage
		err  error
		last string
	)
	for {
		m, merr := n.metrics()
		running, warm := -1.0, -1.0
		if merr == nil {
			running, warm = m["noded_calls_running"], m["noded_warm_processes_idle"]
		}
		u, err = n.usage()
		left := n.leftovers()
		switch {
		case merr != nil:
			last = fmt.Sprintf("scraping /metrics: %v", merr)
		case err != nil:
			last = fmt.Sprintf("reading /proc: %v", err)
		case running != 0:
			last = fmt.Sprintf("%v calls still running", running)
		case int(warm) != n.warm:
			last = fmt.Sprintf("%v warm processes idle, want --warm %d", warm, n.warm)
		case len(left) > 0:
			last = fmt.Sprintf("leftover processes %v", describeAll(left))
		case want > 0 && u.fds != want:
			last = fmt.Sprintf("%d file descriptors open, want the idle level %d", u.fds, want)
		default:
			n.t.Logf("noded %d idle: %d fds, %d threads, %d goroutines, RSS %.1f MiB, Go heap in use %.1f MiB, idle and kept %.1f MiB",
				n.PID(), u.fds, u.threads, u.goroutines, mib(u.rss), mib(u.heapInuse), mib(u.heapIdle))
			return u
		}
		if time.Now().After(deadline) {
			n.t.Errorf("noded (pid %d) not back to idle within 15s: %s; usage %v", n.PID(), last, u)
			return u
		}
		time.Sleep(25 * time.Millisecond) // polling /proc and /metrics, which have no event to wait on
	}
}

// isExe reports whether process pid runs the program at path.
func isExe(pid int, path string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && exe == path
}

// describeAll names processes for a failure message.
func describeAll(pids []int) []string {
	var out []string
	for _, pid := range pids {
		out = append(out, nodetest.Describe(pid))
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
