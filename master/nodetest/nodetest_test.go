package nodetest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/jobs"
)

func TestMain(m *testing.M) { Main(m) }

// TestDefaultGrace holds the harness's idea of noded's default grace,
// which bounds Stop, to noded's.
func TestDefaultGrace(t *testing.T) {
	if defaultGrace != jobs.DefaultGrace {
		t.Errorf("nodetest's defaultGrace = %s, want jobs.DefaultGrace %s", defaultGrace, jobs.DefaultGrace)
	}
	for _, tt := range []struct {
		flags []string
		want  time.Duration
	}{
		{nil, defaultGrace},
		{[]string{"--shutdown-grace", "2s"}, 2 * time.Second},
		{[]string{"--shutdown-grace=3s", "--warm", "0"}, 3 * time.Second},
	} {
		if got := graceOf(tt.flags); got != tt.want {
			t.Errorf("graceOf(%q) = %s, want %s", tt.flags, got, tt.want)
		}
	}
}

// TestRaceBuild checks that noded is built with the race detector
// exactly when this test binary runs with it, and BinaryNoRace never.
func TestRaceBuild(t *testing.T) {
	for _, tt := range []struct {
		bin  string
		race bool
	}{{Noded(t), raceBuild}, {BinaryNoRace(t, NodedPackage), false}} {
		out, err := exec.Command("go", "version", "-m", tt.bin).Output()
		if err != nil {
			t.Fatalf("go version -m %s: %v", tt.bin, err)
		}
		if got := strings.Contains(string(out), "-race=true"); got != tt.race {
			t.Errorf("%s built with -race: %v, want %v:\n%s", tt.bin, got, tt.race, out)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	for _, tt := range []struct {
		text    string
		want    map[string]float64
		wantErr string
	}{
		{"# HELP x a thing\n# TYPE x counter\nx 3\n\ny{a=\"b c\"} 1.5e3\n", map[string]float64{"x": 3, `y{a="b c"}`: 1500}, ""},
		{"x 1\nx 2\n", nil, "written twice"},
		{"x\n", nil, "not \"series value\""},
		{"x one\n", nil, "not \"series value\""},
	} {
		got, err := ParseMetrics(strings.NewReader(tt.text))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMetrics(%q) = %v, %v; want an error saying %q", tt.text, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseMetrics(%q) = %v, %v; want %v", tt.text, got, err, tt.want)
		}
	}
}

// TestNodeLife starts a node, restarts it, kills it and relaunches it,
// and checks what the harness says of it on the way.
func TestNodeLife(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{Flags: []string{"--shutdown-grace", "1s"}})
	addr, first := n.Addr(), n.PID()
	if !n.Running() || !HasEnv(first, n.Marker()) {
		t.Fatalf("noded %d: running %v, marker %v; want both", first, n.Running(), HasEnv(first, n.Marker()))
	}
	n.AwaitMetric(t, "noded_calls_running", "0", func(v float64) bool { return v == 0 })
	n.AwaitLogLine(t, "noded serving", "addr="+addr)

	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := n.Kill(); err != nil {
		t.Errorf("a second Kill: %v, want none (Kill is idempotent)", err)
	}
	if err := n.Stop(); err != nil {
		t.Errorf("Stop after Kill: %v, want none: the test killed it", err)
	}
	if err := n.Relaunch(); err != nil {
		t.Fatal(err)
	}
	if err := n.Relaunch(); err == nil {
		t.Errorf("Relaunch of a running node succeeded, want an error")
	}
	pids := n.PIDs()
	if n.Addr() != addr || len(pids) != 3 || pids[0] != first || len(n.LogFiles()) != 3 {
		t.Errorf("after a restart and a relaunch: address %s, PIDs %v, %d logs; want %s, 3 PIDs from %d, 3 logs", n.Addr(), pids, len(n.LogFiles()), addr, first)
	}
	if _, ok := n.LogLine("noded stopped"); ok {
		t.Errorf("the relaunched noded's log says it stopped: Log reads an older incarnation's")
	}
}

// TestStopReportsCrash checks that Stop reports a noded that died by
// itself before it was asked to stop.
func TestStopReportsCrash(t *testing.T) {
	t.Parallel()
	n, err := Launch(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// SIGQUIT makes a Go program dump its goroutines and exit 2: a
	// crash, as far as the harness knows.
	if err := n.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for n.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("noded %d still running 20s after SIGQUIT", n.PID())
		}
		time.Sleep(10 * time.Millisecond) // polling: the harness's own Wait would count the end as seen
	}
	err = n.Close()
	if err == nil || !strings.Contains(err.Error(), "exited by itself") {
		t.Errorf("Close of a noded that crashed = %v, want it reported", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("a second Close = %v, want nil", err)
	}
}

// TestLeftoverCheck runs a function that leaves behind a grandchild in a
// session of its own, which process-group containment cannot reach, and
// checks that Close finds it by the marker, names it, and kills it. The
// grandchild drops noded's own mark (jobs.DaemonEnv) too, or the next
// noded to start, in any test, would kill it first.
func TestLeftoverCheck(t *testing.T) {
	t.Parallel()
	n, err := Launch(Options{
		Flags: []string{"--containment", "process-group", "--shutdown-grace", "1s"},
		Functions: map[string]string{"escape": `cat >/dev/null
setsid sh -c 'trap "" TERM; echo $$ > @STATE@/pids/gc.tmp && mv @STATE@/pids/gc.tmp @STATE@/pids/gc; exec env -u ` + jobs.DaemonEnv + ` sleep 600' </dev/null >/dev/null 2>&1 &
# Answer only once the grandchild has left the process group.
while [ ! -e @STATE@/pids/gc ]; do sleep 0.01; done
echo '"escaped"'`},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, n.URL()+"/StartFunction", strings.NewReader(`{"fn_name":"escape","timeout":20}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	resp.Body.Close()
	gc := n.WaitPIDFile(t, "gc")
	if got := n.RecordedPIDs(); len(got) != 1 || got[0] != gc {
		t.Errorf("RecordedPIDs = %v, want [%d]", got, gc)
	}
	err = n.Close()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d ", gc)) || !strings.Contains(err.Error(), "still running") {
		t.Errorf("Close with a grandchild left = %v, want an error naming pid %d", err, gc)
	}
	if !AwaitGone(gc, 10*time.Second) {
		t.Fatalf("grandchild %d still running 10s after Close killed it: %s", gc, Describe(gc))
	}
}

// TestEnviron checks that a node's processes carry no marker of this
// process's, and that the race detector's second of sleep at exit is
// dropped unless the tests asked for it.
func TestEnviron(t *testing.T) {
	t.Setenv(MarkerKey, "outer")
	for _, kv := range environ() {
		if strings.HasPrefix(kv, MarkerKey+"=") {
			t.Errorf("environ() with %s set holds %q", MarkerKey, kv)
		}
	}
	for _, tt := range []struct{ gorace, want string }{
		{"", "atexit_sleep_ms=0"},
		{"halt_on_error=1", "halt_on_error=1 atexit_sleep_ms=0"},
		{"atexit_sleep_ms=500", "atexit_sleep_ms=500"},
	} {
		if got := withoutExitSleep(tt.gorace); got != tt.want {
			t.Errorf("withoutExitSleep(%q) = %q, want %q", tt.gorace, got, tt.want)
		}
	}
	if got := os.Getenv("GORACE"); !strings.Contains(got, "atexit_sleep_ms=") {
		t.Errorf("GORACE under nodetest.Run = %q, want it to set atexit_sleep_ms", got)
	}
}

// TestRaceReports checks that the race detector's reports are cut out of
// a log whole, and nothing else with them.
func TestRaceReports(t *testing.T) {
	report := "WARNING: DATA RACE\nWrite at 0x00c0001e42a0 by main goroutine:\n  main.main()\n"
	log := "time=1 msg=serving\n==================\n" + report + "==================\ntime=2 msg=stopped\n"
	if got := raceReports(log + log); got != report+report {
		t.Errorf("raceReports of a log with two reports = %q, want %q", got, report+report)
	}
	if got := raceReports("time=1 msg=serving\n"); got != "" {
		t.Errorf("raceReports of a log without a report = %q, want none", got)
	}
}
