package tools

import (
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
)

// benchJSON is bench --json's output as a test reads it.
type benchJSON struct {
	Nodes             []string    `json:"nodes"`
	Fn                string      `json:"fn"`
	Concurrency       int         `json:"concurrency"`
	Rounds            int         `json:"rounds"`
	Connect           *phaseJSON  `json:"connect"`
	DialFloor         *phaseJSON  `json:"dial_floor"`
	Run               phaseJSON   `json:"run"`
	HTTPFloor         *phaseJSON  `json:"http_floor"`
	SpawnFloor        *phaseJSON  `json:"spawn_floor"`
	SpawnFloorMissing string      `json:"spawn_floor_missing"`
	MinSpawnFloor     *phaseJSON  `json:"min_spawn_floor"`
	LineFloor         *phaseJSON  `json:"line_floor"`
	Ratios            *ratiosJSON `json:"ratios"`
}

type phaseJSON struct {
	Calls      int                `json:"calls"`
	Successes  int                `json:"successes"`
	Errors     map[string]int     `json:"errors"`
	FirstError string             `json:"first_error"`
	Elapsed    float64            `json:"elapsed_seconds"`
	Throughput float64            `json:"throughput_per_second"`
	Latency    map[string]float64 `json:"latency_seconds"`
	CPUPerCall float64            `json:"client_cpu_seconds_per_call"`
}

type ratiosJSON struct {
	P50, P90, P99, Max, Throughput float64
	WarmP50                        float64 `json:"warm_p50"`
	ConnectCPU                     float64 `json:"connect_cpu"`
	FunctionSpawn                  float64 `json:"function_spawn"`
}

// runJSON runs noderpc with args, fails t unless it exits with want, and
// decodes what it printed into v.
func runJSON(t *testing.T, want int, v any, args ...string) {
	t.Helper()
	code, stdout, stderr := run(t, "", args...)
	if code != want {
		t.Errorf("noderpc %q exited %d, want %d\nstdout: %s\nstderr: %s", args, code, want, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("noderpc %q printed %q: %v", args, stdout, err)
	}
}

// checkPhase fails t unless p ran want operations that add up, and, when
// some succeeded, has ordered latencies and a throughput.
func checkPhase(t *testing.T, name string, p *phaseJSON, want int) {
	t.Helper()
	if p == nil {
		t.Errorf("%s: missing from the report", name)
		return
	}
	failed := 0
	for _, n := range p.Errors {
		failed += n
	}
	if p.Calls != want || p.Calls != p.Successes+failed {
		t.Errorf("%s: %d calls, %d successes, errors %v; want %d calls = successes + errors", name, p.Calls, p.Successes, p.Errors, want)
	}
	if p.Calls > 0 && (p.Elapsed <= 0 || p.Throughput <= 0) {
		t.Errorf("%s: elapsed %v s, throughput %v/s; want both above 0", name, p.Elapsed, p.Throughput)
	}
	if p.Successes == 0 {
		return
	}
	l := p.Latency
	if !(0 < l["p50"] && l["p50"] <= l["p90"] && l["p90"] <= l["p99"] && l["p99"] <= l["max"] && l["mean"] <= l["max"]) {
		t.Errorf("%s: latencies %v, want 0 < p50 <= p90 <= p99 <= max and mean <= max", name, l)
	}
}

// TestBenchReport: bench measures the floors in the same run, the
// minimal process's among them, and takes every ratio against them.
func TestBenchReport(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Flags: []string{"--warm", "0"}})
	minimal := nodetest.Binary(t, "github.com/noderpc/noderpc/tools/noderpc-floor")
	args := []string{"--json", "bench", "--count", "20", "--concurrency", "2", "--spawn-floor-bin", nodetest.Noded(t) + "-fn", "--min-floor-bin", minimal, n.Addr()}
	var r benchJSON
	runJSON(t, ExitOK, &r, args...)
	if r.Fn != "echo" || r.Concurrency != 2 || r.Rounds != 5 || len(r.Nodes) != 1 || r.Nodes[0] != n.Addr() {
		t.Errorf("report heads fn %q concurrency %d rounds %d nodes %q, want echo, 2, 5, [%s]", r.Fn, r.Concurrency, r.Rounds, r.Nodes, n.Addr())
	}
	phases := map[string]*phaseJSON{"run": &r.Run, "http floor": r.HTTPFloor, "spawn floor": r.SpawnFloor, "min spawn floor": r.MinSpawnFloor, "line floor": r.LineFloor}
	for name, p := range phases {
		checkPhase(t, name, p, 20)
		if p != nil && p.Successes != p.Calls {
			t.Errorf("%s: %d of %d succeeded, errors %v (first: %s)", name, p.Successes, p.Calls, p.Errors, p.FirstError)
		}
	}
	// Every call was released, by a later start or after its round:
	// the node holds none once bench is over.
	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 20, "noded_calls_retained": 0})
	if r.Ratios == nil || r.Ratios.P50 <= 0 || r.Ratios.Throughput <= 0 || r.MinSpawnFloor == nil || r.LineFloor == nil {
		t.Fatalf("ratios %+v, want the p50 and throughput ratios above 0, against the minimal process", r.Ratios)
	}
	p50 := func(p *phaseJSON) float64 { return p.Latency["p50"] }
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"p50 ratio, over min spawn p50 + http p50", r.Ratios.P50, p50(&r.Run) / (p50(r.MinSpawnFloor) + p50(r.HTTPFloor))},
		{"warm p50 ratio, over line p50 + http p50", r.Ratios.WarmP50, p50(&r.Run) / (p50(r.LineFloor) + p50(r.HTTPFloor))},
		{"throughput ratio, over the min spawn floor's", r.Ratios.Throughput, r.Run.Throughput / r.MinSpawnFloor.Throughput},
		{"function spawn ratio, spawn p50 over min spawn p50", r.Ratios.FunctionSpawn, p50(r.SpawnFloor) / p50(r.MinSpawnFloor)},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}

func near(a, b float64) bool { return a > 0.999*b && a < 1.001*b }

func TestBenchText(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	args := []string{"bench", "--count", "5", "--spawn-floor-bin", nodetest.Noded(t), "--fn", "echo", "--args", `"x"`, n.Addr()}
	code, stdout, stderr := run(t, "", args...)
	if code != ExitOK {
		t.Fatalf("noderpc %q exited %d, want 0\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
	}
	dur := `[0-9.]+(ns|µs|ms|s)`
	for _, want := range []string{
		`(?m)^bench echo "x" on 127\.0\.0\.1:\d+, concurrency 1: 5 calls in ` + dur + `, 5 succeeded$`,
		`(?m)^  throughput [0-9.]+ calls/s = [0-9.]+ x spawn floor [0-9.]+/s$`,
		`(?m)^  p50 ` + dur + ` = [0-9.]+ x \(spawn floor ` + dur + ` \+ http floor ` + dur + `\)$`,
		`(?m)^  p99 ` + dur + ` = [0-9.]+ x \(spawn floor ` + dur + ` \+ http floor ` + dur + `\)$`,
		`(?m)^  errors: none$`,
		`(?m)^spawn floor: 5 runs of \S+ in ` + dur + `, [0-9.]+/s, errors: none$`,
		`(?m)^http floor: 5 GET /Version in `,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("noderpc %q printed\n%s\nwant a match of %s", args, stdout, want)
		}
	}
}

func TestBenchErrorsByKind(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	dead := deadAddr(t)
	for _, tc := range []struct {
		name          string
		args          []string
		wantSuccesses int
		wantErrors    map[string]int
	}{
		{"unknown function", []string{"--fn", "nope", n.Addr()}, 0, map[string]int{"unknown_function": 10}},
		// Calls take the nodes in turn: half go to the dead one.
		{"a dead node", []string{"--rounds", "1", "--concurrency", "10", n.Addr(), dead}, 5, map[string]int{"unreachable": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--json", "bench", "--count", "10", "--floors=false"}, tc.args...)
			var r benchJSON
			runJSON(t, ExitFailed, &r, args...)
			checkPhase(t, "run", &r.Run, 10)
			if r.Run.Successes != tc.wantSuccesses || !equalCounts(r.Run.Errors, tc.wantErrors) {
				t.Errorf("noderpc %q: %d successes, errors %v; want %d, %v", args, r.Run.Successes, r.Run.Errors, tc.wantSuccesses, tc.wantErrors)
			}
			if r.Run.FirstError == "" {
				t.Errorf("noderpc %q: no first_error beside errors %v", args, r.Run.Errors)
			}
			if r.HTTPFloor != nil || r.SpawnFloor != nil || r.Ratios != nil {
				t.Errorf("noderpc %q measured floors with --floors=false", args)
			}
		})
	}
}

// TestBenchConnect: --connect sends one GET /Version to every node, at
// least --concurrency in all, before the first round, and reports it
// apart from the floors and the calls, beside its dial floor (as many
// bare connections and requests) when floors are measured; without it
// there is neither.
func TestBenchConnect(t *testing.T) {
	a := nodetest.Start(t, nodetest.Options{})
	b := nodetest.Start(t, nodetest.Options{})
	dead := deadAddr(t)
	for _, tc := range []struct {
		name        string
		args        []string
		want        int // calls of the connect phase and the dial floor; 0: neither
		floor       bool
		wantErrors  map[string]int
		wantSuccess int
	}{
		{"every node once", []string{"--connect", "--concurrency", "1", a.Addr(), b.Addr(), dead}, 3, true, map[string]int{"unreachable": 1}, 2},
		{"at least concurrency", []string{"--connect", "--concurrency", "4", a.Addr()}, 4, true, map[string]int{}, 4},
		{"without floors", []string{"--connect", "--floors=false", "--concurrency", "1", a.Addr(), b.Addr()}, 2, false, map[string]int{}, 2},
		{"not asked", []string{"--concurrency", "1", a.Addr()}, 0, false, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--json", "bench", "--count", "4", "--rounds", "1", "--spawn-floor-bin", "/nonexistent", "--min-floor-bin", "/nonexistent"}, tc.args...)
			var r benchJSON
			code, stdout, stderr := run(t, "", args...)
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("noderpc %q exited %d, printed %q (stderr %q): %v", args, code, stdout, stderr, err)
			}
			checkPhase(t, "run", &r.Run, 4)
			if tc.want == 0 {
				if r.Connect != nil || r.DialFloor != nil {
					t.Errorf("noderpc %q reported a connect phase %+v or a dial floor %+v", args, r.Connect, r.DialFloor)
				}
				return
			}
			checkPhase(t, "connect", r.Connect, tc.want)
			if r.Connect != nil && (r.Connect.Successes != tc.wantSuccess || !equalCounts(r.Connect.Errors, tc.wantErrors)) {
				t.Errorf("noderpc %q: connect %d successes, errors %v; want %d, %v", args, r.Connect.Successes, r.Connect.Errors, tc.wantSuccess, tc.wantErrors)
			}
			if !tc.floor {
				if r.DialFloor != nil {
					t.Errorf("noderpc %q measured a dial floor %+v", args, r.DialFloor)
				}
				return
			}
			checkPhase(t, "dial floor", r.DialFloor, tc.want)
			if r.DialFloor != nil && r.DialFloor.Successes != tc.wantSuccess {
				t.Errorf("noderpc %q: dial floor %d successes, errors %v; want %d", args, r.DialFloor.Successes, r.DialFloor.Errors, tc.wantSuccess)
			}
			if r.Ratios == nil || !near(r.Ratios.ConnectCPU, r.Connect.CPUPerCall/r.DialFloor.CPUPerCall) {
				t.Errorf("noderpc %q: ratios %+v, want connect_cpu = %v / %v", args, r.Ratios, r.Connect.CPUPerCall, r.DialFloor.CPUPerCall)
			}
		})
	}
	args := []string{"bench", "--connect", "--count", "2", "--rounds", "1", "--spawn-floor-bin", "/nonexistent", "--min-floor-bin", "/nonexistent", a.Addr(), b.Addr()}
	code, stdout, stderr := run(t, "", args...)
	dur := `[0-9.]+(ns|µs|ms|s)`
	for _, want := range []string{
		`(?m)^connect: 2 GET /Version opened the connections before the rounds in ` + dur + `, p50 ` + dur + ` p99 ` + dur + `, client CPU ` + dur + ` per call = [0-9.]+ x dial floor's, errors: none$`,
		`(?m)^dial floor: 2 bare connections, each with one GET /Version, in ` + dur + `, p50 ` + dur + ` p99 ` + dur + `, client CPU ` + dur + ` per call, errors: none$`,
	} {
		if code != ExitOK || !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("noderpc %q exited %d, printed\n%s(stderr %q)\nwant 0 and a match of %s", args, code, stdout, stderr, want)
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "no NODE"},
		{[]string{"bench", "nohost"}, `NODE "nohost" has no port`},
		{[]string{"bench", "--args", "{", "127.0.0.1:1"}, "--args is not valid JSON"},
		{[]string{"bench", "--concurrency", "0", "127.0.0.1:1"}, "--concurrency must be at least 1"},
		{[]string{"bench", "--rate", "-1", "127.0.0.1:1"}, "--rate must not be negative"},
		{[]string{"bench", "--count", "3", "--rounds", "4", "127.0.0.1:1"}, "--rounds must be between 1 and --count"},
		{[]string{"bench", "--scale", "10.0.0.1:1811"}, "NODE must be a loopback address"},
		{[]string{"bench", "--scale", "127.0.0.1:1", "127.0.0.1:2"}, "--scale measures one node"},
	} {
		code, _, stderr := run(t, "", tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("noderpc %q exited %d with %q; want %d and %q", tc.args, code, stderr, ExitUsage, tc.want)
		}
	}
}

func TestBenchScale(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	// A socket timeout long enough that each wait is one round.
	args := []string{"--socket-timeout", "20s", "--unreachable-after", "20s", "--json", "bench", "--scale",
		"--running", "3", "--waits", "9", "--sleep", "3s", "--concurrency", "3", n.Addr()}
	var r struct {
		PID          int       `json:"pid"`
		Start        phaseJSON `json:"start"`
		Waits        int       `json:"waits"`
		WaitsOpenMax int       `json:"waits_open_max"`
		Wait         struct {
			Results int            `json:"results"`
			Errors  map[string]int `json:"errors"`
		} `json:"wait"`
		Release phaseJSON `json:"release"`
		RSS     []int64   `json:"rss_bytes"`
		Threads []int     `json:"threads"`
	}
	runJSON(t, ExitOK, &r, args...)
	if r.PID != n.PID() {
		t.Errorf("report is of pid %d, want noded's %d", r.PID, n.PID())
	}
	checkPhase(t, "start", &r.Start, 3)
	checkPhase(t, "release", &r.Release, 3)
	if r.Start.Successes != 3 || r.Release.Successes != 3 {
		t.Errorf("%d starts and %d releases succeeded, want 3 each", r.Start.Successes, r.Release.Successes)
	}
	if r.Waits != 9 || r.WaitsOpenMax != 9 || r.Wait.Results != 9 || len(r.Wait.Errors) != 0 {
		t.Errorf("waits %d, open at most %d, results %d, errors %v; want 9, 9, 9, none", r.Waits, r.WaitsOpenMax, r.Wait.Results, r.Wait.Errors)
	}
	if len(r.RSS) != 3 || len(r.Threads) != 3 {
		t.Fatalf("rss %v threads %v, want three samples each", r.RSS, r.Threads)
	}
	for i := range 3 {
		if r.RSS[i] <= 0 || r.Threads[i] <= 0 {
			t.Errorf("sample %d: rss %d threads %d, want both above 0", i, r.RSS[i], r.Threads[i])
		}
	}
}
