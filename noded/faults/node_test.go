//go:build fault

package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/noded/functions"
)

// startNode starts noded for a scenario with the scripts of
// testdata/functions and the extra flags. nodetest ties its life to the
// test's: all its incarnations share one marker, which noded hands down
// to every function process and they to theirs, and the test fails if a
// process carrying it outlives the scenario.
// NODERPC_FAULT_KEEP_LOGS=DIR copies every incarnation's log into DIR.
func startNode(t *testing.T, flags ...string) *nodetest.Node {
	t.Helper()
	return startNodeWith(t, nodetest.Options{Flags: flags})
}

// startNodeWith is startNode with more options.
func startNodeWith(t *testing.T, opts nodetest.Options) *nodetest.Node {
	t.Helper()
	opts.FunctionsFrom = filepath.Join("testdata", "functions")
	opts.KeepLogsIn = os.Getenv("NODERPC_FAULT_KEEP_LOGS")
	n := nodetest.Start(t, opts)
	// The work script appends each run to runs/TOKEN.
	if err := os.MkdirAll(filepath.Join(n.State(), "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// warmOf returns the --warm of n: the warm Go function processes noded
// keeps when idle (4 unless the flags say otherwise).
func warmOf(t *testing.T, n *nodetest.Node) int {
	t.Helper()
	warm := 4
	flags := n.Options().Flags
	for i, f := range flags {
		if f == "--warm" && i+1 < len(flags) {
			w, err := strconv.Atoi(flags[i+1])
			if err != nil {
				t.Fatalf("bad --warm %q: %v", flags[i+1], err)
			}
			warm = w
		}
	}
	return warm
}

// signal sends sig to n's noded, failing the test if it cannot.
func signal(t *testing.T, n *nodetest.Node, sig syscall.Signal) {
	t.Helper()
	if err := n.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// leftovers lists the live processes with the scenario's marker that are
// neither the running noded nor one of its warm Go function processes
// (children running the function binary beside noded, or noded's own
// binary without one, which wait for a call): what is left of calls that
// have ended or of a daemon that died.
func leftovers(n *nodetest.Node) []int {
	cur, running := n.PID(), n.Running()
	var left []int
	for _, pid := range n.Processes() {
		if running && pid == cur {
			continue
		}
		if running {
			if ppid, _, ok := nodetest.ProcStat(pid); ok && ppid == cur && (isExe(pid, n.Binary()) || isExe(pid, n.Binary()+functions.BinarySuffix)) {
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
func survivors(n *nodetest.Node) []int {
	cur := n.PID()
	var out []int
	for _, pid := range n.Processes() {
		if pid != cur && !descendsFrom(pid, cur) {
			out = append(out, pid)
		}
	}
	return out
}

// waitNoSurvivors polls until no survivor is found or d passes, and
// returns the survivors of the last look.
func waitNoSurvivors(n *nodetest.Node, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := survivors(n)
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
func waitNoLeftovers(n *nodetest.Node, d time.Duration) (left, zombies []int) {
	deadline := time.Now().Add(d)
	for {
		left = leftovers(n)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: another process's end sends no event
	}
	for _, pid := range n.RecordedPIDs() {
		if _, state, ok := nodetest.ProcStat(pid); ok && state == 'Z' {
			zombies = append(zombies, pid)
		}
	}
	return left, zombies
}

// run is one run of the work function: the noded that started it and the
// script's PID.
type run struct{ noded, pid int }

// runsOf returns the runs recorded for token.
func runsOf(n *nodetest.Node, token string) []run {
	b, err := os.ReadFile(filepath.Join(n.State(), "runs", token))
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
	// fds counts noded's descriptors but those of its call cgroups,
	// which it holds open for the cgroups' life, the idle ones (kept for
	// reuse) included; cgroupFDs counts those.
	fds, cgroupFDs      int
	threads, goroutines int
	rss                 int64 // bytes
	heapInuse, heapIdle int64 // Go heap spans in use, and idle but not returned to the OS
}

func (u usage) String() string {
	return fmt.Sprintf("%d+%d/%d/%d/%.1fMiB", u.fds, u.cgroupFDs, u.threads, u.goroutines, float64(u.rss)/(1<<20))
}

// usageOf samples noded's descriptors, threads and RSS from /proc and
// its goroutines and Go heap from /metrics.
func usageOf(n *nodetest.Node) (usage, error) {
	pid := n.PID()
	var u usage
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return u, err
	}
	for _, fd := range fds {
		// A descriptor closed since the listing reads as an error:
		// counted as noded's own, as it was when listed.
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(target, "/sys/fs/cgroup/") {
			u.cgroupFDs++
		} else {
			u.fds++
		}
	}
	st, err := nodetest.ReadStatus(pid)
	if err != nil {
		return u, err
	}
	u.threads, u.rss = st.Threads, st.VmRSS
	m, err := n.Metrics()
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
func idle(t *testing.T, n *nodetest.Node, want int) usage {
	t.Helper()
	warm := warmOf(t, n)
	deadline := time.Now().Add(15 * time.Second)
	var (
		u    usage
		err  error
		last string
	)
	for {
		m, merr := n.Metrics()
		running, idleWarm := -1.0, -1.0
		if merr == nil {
			running, idleWarm = m["noded_calls_running"], m["noded_warm_processes_idle"]
		}
		u, err = usageOf(n)
		left := leftovers(n)
		switch {
		case merr != nil:
			last = fmt.Sprintf("scraping /metrics: %v", merr)
		case err != nil:
			last = fmt.Sprintf("reading /proc: %v", err)
		case running != 0:
			last = fmt.Sprintf("%v calls still running", running)
		case int(idleWarm) != warm:
			last = fmt.Sprintf("%v warm processes idle, want --warm %d", idleWarm, warm)
		case len(left) > 0:
			last = fmt.Sprintf("leftover processes %v", describeAll(left))
		case want > 0 && u.fds != want:
			last = fmt.Sprintf("%d file descriptors open, want the idle level %d", u.fds, want)
		case u.cgroupFDs > maxCgroupFDs(warm):
			last = fmt.Sprintf("%d descriptors of call cgroups open, want at most %d", u.cgroupFDs, maxCgroupFDs(warm))
		default:
			t.Logf("noded %d idle: %d fds, %d threads, %d goroutines, RSS %.1f MiB, Go heap in use %.1f MiB, idle and kept %.1f MiB",
				n.PID(), u.fds, u.threads, u.goroutines, mib(u.rss), mib(u.heapInuse), mib(u.heapIdle))
			return u
		}
		if time.Now().After(deadline) {
			t.Errorf("noded (pid %d) not back to idle within 15s: %s; usage %v", n.PID(), last, u)
			return u
		}
		time.Sleep(25 * time.Millisecond) // polling /proc and /metrics, which have no event to wait on
	}
}

// maxCgroupFDs is the most descriptors of call cgroups an idle noded
// holds with warm processes in its pool: three for each cgroup, of the
// idle ones (jobs' maxIdleCgroups, 32) and of each warm process.
func maxCgroupFDs(warm int) int { return 3 * (32 + warm) }

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
