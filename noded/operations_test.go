package noded_test

// Tests of noded as systemd and Prometheus see it: the unit file, the
// sd_notify messages of the real binary, /metrics after real calls, and
// the exit status of --check-config. They run noded with nodetest.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// put sends a request and decodes a 200 answer into out; any other status
// is returned as its *rpc.Error.
func put(t *testing.T, n *nodetest.Node, path string, body, out any) error {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, n.URL()+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s %s: %v", path, b, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e rpc.ErrorResponse
		if err := dec.Decode(&e); err != nil || e.Error == nil {
			t.Fatalf("PUT %s %s: status %d with an undecodable error body (%v)", path, b, resp.StatusCode, err)
		}
		return e.Error
	}
	if err := dec.Decode(out); err != nil {
		t.Fatalf("PUT %s %s: decoding the answer: %v", path, b, err)
	}
	return nil
}

// call starts a call that must be answered with its record.
func call(t *testing.T, n *nodetest.Node, req rpc.StartRequest) *rpc.Call {
	t.Helper()
	var c rpc.Call
	if err := put(t, n, rpc.PathStartFunction, req, &c); err != nil {
		t.Fatalf("StartFunction %+v = %v, want a call record", req, err)
	}
	return &c
}

// listenNotify listens on a notify socket of the test's own, as systemd
// does for a unit with Type=notify, and returns its path; the socket is
// closed when the test ends.
func listenNotify(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return sock, conn
}

// TestNotify runs noded as systemd would with Type=notify and a watchdog:
// READY=1 comes once it serves, WATCHDOG=1 every WATCHDOG_USEC/2, and
// STOPPING=1 when SIGTERM begins the shutdown, after which the pings go
// on while a function that ignores SIGTERM waits out the grace period.
func TestNotify(t *testing.T) {
	sock, conn := listenNotify(t)
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// next returns the next message holding line, failing the test after
	// timeout; the messages it skips are returned too.
	next := func(line string, timeout time.Duration) (skipped []string) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed while waiting for %s", line)
				}
				for l := range strings.Lines(m) {
					if strings.TrimSpace(l) == line {
						return skipped
					}
				}
				skipped = append(skipped, m)
			case <-deadline:
				t.Fatalf("no %s on NOTIFY_SOCKET within %s; got %q", line, timeout, skipped)
			}
		}
	}

	const grace = 2 * time.Second
	p := nodetest.Start(t, nodetest.Options{
		Env:   []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=200000"},
		Flags: []string{"--shutdown-grace", grace.String()},
		// Ignored signals stay ignored across exec: sleep ignores
		// SIGTERM too. The log line says the trap is set.
		Functions: map[string]string{"stubborn": "trap '' TERM\necho trapped >&2\nexec sleep 600\n"},
	})
	if skipped := next("READY=1", 20*time.Second); len(skipped) > 0 {
		t.Errorf("messages before READY=1: %q, want none", skipped)
	}
	var v rpc.VersionResponse
	resp, err := http.Get(p.URL() + rpc.PathVersion)
	if err != nil {
		t.Fatalf("GET %s after READY=1: %v", rpc.PathVersion, err)
	}
	json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if v.PID != p.PID() {
		t.Errorf("GET %s after READY=1 = pid %d, want noded's %d", rpc.PathVersion, v.PID, p.PID())
	}

	// Pings at half of 200ms: three within a few seconds, spaced apart.
	var pings []time.Time
	for range 3 {
		next("WATCHDOG=1", 10*time.Second)
		pings = append(pings, time.Now())
	}
	if gap := pings[2].Sub(pings[0]); gap < 100*time.Millisecond {
		t.Errorf("three WATCHDOG=1 pings within %s, want them ~100ms apart (WATCHDOG_USEC=200000)", gap)
	}

	stubborn := call(t, p, rpc.StartRequest{FnName: "stubborn", Timeout: 0})
	for len(stubborn.Log) == 0 && !stubborn.Finished {
		var w rpc.Call
		if err := put(t, p, rpc.PathWaitForFunction, rpc.WaitRequest{ID: stubborn.ID, Timeout: 30, WakeOnLog: true}, &w); err != nil {
			t.Fatalf("WaitForFunction %s: %v", stubborn.ID, err)
		}
		stubborn = &w
	}
	if stubborn.Finished {
		t.Fatalf("stubborn function ended before the shutdown: %s %v", stubborn.State, stubborn.Error)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1", 20*time.Second)
	stopping := time.Now()
	next("WATCHDOG=1", grace)
	if time.Since(stopping) >= grace {
		t.Errorf("no WATCHDOG=1 within the %s grace after STOPPING=1: systemd would kill a daemon that is stopping its functions", grace)
	}
	if err := p.Wait(30 * time.Second); err != nil {
		t.Errorf("noded after SIGTERM: %v, want exit status 0", err)
	}
}

// TestNotifyVariablesNotInherited checks that a function process does
// not see NOTIFY_SOCKET: it could otherwise speak for noded.
func TestNotifyVariablesNotInherited(t *testing.T) {
	sock, _ := listenNotify(t)
	p := nodetest.Start(t, nodetest.Options{
		Env:       []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=60000000"},
		Functions: map[string]string{"notify_env": "printf '\"%s|%s\"' \"${NOTIFY_SOCKET-unset}\" \"${WATCHDOG_USEC-unset}\"\n"},
	})
	c := call(t, p, rpc.StartRequest{FnName: "notify_env", Timeout: 30})
	if c.State != rpc.StateSucceeded || string(c.Result) != `"unset|unset"` {
		t.Errorf("notify_env = state %s, result %s, error %v; want succeeded with \"unset|unset\"", c.State, c.Result, c.Error)
	}
}

// TestUnitFile checks noded.service with systemd-analyze verify and holds
// it to the settings doc/operations.md explains.
func TestUnitFile(t *testing.T) {
	text, err := os.ReadFile("noded.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := parseUnit(string(text))
	for key, want := range map[string]string{
		"Type":                     "notify",
		"KillMode":                 "mixed",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"OOMPolicy":                "continue",
		"StateDirectory":           "noded",
		"RuntimeDirectory":         "noded",
		"ConfigurationDirectory":   "noded",
		"ExecStart":                "/usr/local/bin/noded --config /etc/noded/noded.conf",
	} {
		if got := unit[key]; got != want {
			t.Errorf("noded.service: %s=%q, want %q", key, got, want)
		}
	}
	stop, err := time.ParseDuration(unit["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("noded.service: TimeoutStopSec=%q: %v", unit["TimeoutStopSec"], err)
	}
	// noded waits the grace, then 5s for the reap, then up to 5s to
	// close connections: systemd's SIGKILL must come after all that.
	if min := jobs.DefaultGrace + 10*time.Second; stop <= min {
		t.Errorf("noded.service: TimeoutStopSec=%s, want more than %s (--shutdown-grace %s and the margins)", stop, min, jobs.DefaultGrace)
	}
	if unit["WatchdogSec"] == "" {
		t.Errorf("noded.service sets no WatchdogSec")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd): cannot verify noded.service")
	}
	// verify insists that ExecStart's binary exists: point it at the
	// binary under test, in a copy named like the real unit.
	copied := filepath.Join(t.TempDir(), "noded.service")
	rewritten := strings.Replace(string(text), "ExecStart=/usr/local/bin/noded ", "ExecStart="+nodetest.Noded(t)+" ", 1)
	if rewritten == string(text) {
		t.Fatal("noded.service: no ExecStart=/usr/local/bin/noded line to point at the test binary")
	}
	if err := os.WriteFile(copied, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copied).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify noded.service: %v\n%s", err, out)
	}
	// verify exits 0 on unknown keys and bad values, which it only
	// reports: any word about the unit is a failure.
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "noded") {
			t.Errorf("systemd-analyze verify noded.service: %s", strings.TrimSpace(line))
		} else {
			t.Logf("systemd-analyze verify (not about noded.service): %s", strings.TrimSpace(line))
		}
	}
}

// parseUnit returns the last value of each key of a unit file.
func parseUnit(text string) map[string]string {
	unit := make(map[string]string)
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			unit[k] = v
		}
	}
	return unit
}

// TestCheckConfigExitStatus runs noded --check-config as an operator
// would after editing the file.
func TestCheckConfigExitStatus(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file string
		wantStatus int
		wantOutput string
	}{
		{"valid", "insecure = true\nlisten = \"127.0.0.1:1811\"\nmax-running = 200\n", 0, "configuration is valid"},
		{"unknown key", "insecure = true\nmax-runing = 200\n", 2, `unknown key "max-runing"`},
		{"bad value", "insecure = true\nshutdown-grace = \"0s\"\n", 2, "--shutdown-grace must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".conf")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			status, out := runNoded(t, "--config", path, "--check-config")
			if status != tc.wantStatus || !strings.Contains(out, tc.wantOutput) {
				t.Errorf("noded --config %s --check-config = status %d, output %q; want status %d, output containing %q", path, status, out, tc.wantStatus, tc.wantOutput)
			}
		})
	}
}

// TestMetrics makes calls that succeed, fail, are cancelled, are refused
// as busy and name no function, and checks /metrics counts each of them,
// and that the log has a line for each call's start and end.
func TestMetrics(t *testing.T) {
	p := nodetest.Start(t, nodetest.Options{Flags: []string{"--max-running", "1", "--log-format", "json"}})
	const busy, unknown = `noded_calls_rejected_total{reason="busy"}`, `noded_calls_rejected_total{reason="unknown_function"}`
	p.AwaitMetrics(t, map[string]float64{
		"noded_calls_running": 0, "noded_calls_retained": 0, "noded_calls_running_limit": 1,
		busy: 0, unknown: 0, "noded_spawn_seconds_count": 0,
		fmt.Sprintf(`noded_build_info{version="%s",protocol="%d",goversion=%q}`, rpc.Version, rpc.ProtocolVersion, runtimeVersion(t)): 1,
	})

	echo := call(t, p, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`{"x":1}`), Timeout: 30})
	if echo.State != rpc.StateSucceeded {
		t.Fatalf("echo = %s (%v), want succeeded", echo.State, echo.Error)
	}
	failed := call(t, p, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{}`), Timeout: 30})
	if failed.State != rpc.StateFailed {
		t.Fatalf("sleep without seconds = %s, want failed", failed.State)
	}
	// The limit of one is free again only once the failed call is counted
	// out.
	p.AwaitMetrics(t, map[string]float64{"noded_calls_running": 0})
	long := call(t, p, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":600}`), Timeout: 0})
	if long.State != rpc.StateRunning {
		t.Fatalf("sleep 600 with timeout 0 = %s, want running", long.State)
	}
	var c rpc.Call
	if err := put(t, p, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", Timeout: 1}, &c); !errors.Is(err, rpc.ErrBusy) {
		t.Fatalf("echo while sleep holds the only slot = %v, want busy", err)
	}
	if err := put(t, p, rpc.PathStartFunction, rpc.StartRequest{FnName: "no_such_function", Timeout: 1}, &c); !errors.Is(err, rpc.ErrUnknownFunction) {
		t.Fatalf("no_such_function = %v, want unknown_function", err)
	}
	waited := make(chan *rpc.Call, 1)
	go func() {
		var w rpc.Call
		if err := put(t, p, rpc.PathWaitForFunction, rpc.WaitRequest{ID: long.ID, Timeout: 50}, &w); err != nil {
			t.Errorf("WaitForFunction %s = %v", long.ID, err)
		}
		waited <- &w
	}()

	got := p.AwaitMetrics(t, map[string]float64{
		`noded_calls_started_total{fn="echo"}`:                    1,
		`noded_calls_started_total{fn="sleep"}`:                   2,
		`noded_calls_finished_total{fn="echo",state="succeeded"}`: 1,
		`noded_calls_finished_total{fn="sleep",state="failed"}`:   1,
		"noded_calls_running":                                     1,
		"noded_calls_retained":                                    2,
		busy:                                                      1,
		unknown:                                                   1,
		"noded_wait_requests_in_flight":                           1,
		"noded_spawn_seconds_count":                               3,
		`noded_spawn_seconds_bucket{le="+Inf"}`:                   3,
		`noded_call_duration_seconds_count{fn="echo"}`:            1,
		`noded_call_duration_seconds_count{fn="sleep"}`:           1,
	})
	if s := got["noded_spawn_seconds_sum"]; s <= 0 || s > 30 {
		t.Errorf("noded_spawn_seconds_sum = %g, want the time of three spawns, > 0", s)
	}
	if got["process_resident_memory_bytes"] <= 0 {
		t.Errorf("process_resident_memory_bytes = %g, want the daemon's memory", got["process_resident_memory_bytes"])
	}

	var cancelled rpc.Call
	if err := put(t, p, rpc.PathCancelFunction, rpc.IDRequest{ID: long.ID}, &cancelled); err != nil {
		t.Fatalf("CancelFunction %s = %v", long.ID, err)
	}
	if w := <-waited; w.State != rpc.StateCancelled {
		t.Errorf("WaitForFunction %s after cancel = %s, want cancelled", long.ID, w.State)
	}
	var released struct{}
	if err := put(t, p, rpc.PathReleaseFunction, rpc.IDRequest{ID: echo.ID}, &released); err != nil {
		t.Fatalf("ReleaseFunction %s = %v", echo.ID, err)
	}
	p.AwaitMetrics(t, map[string]float64{
		`noded_calls_finished_total{fn="sleep",state="cancelled"}`: 1,
		`noded_calls_dropped_total{reason="released"}`:             1,
		"noded_calls_running":                                      0,
		"noded_calls_retained":                                     2,
		"noded_wait_requests_in_flight":                            0,
		`noded_call_duration_seconds_count{fn="sleep"}`:            2,
	})

	// One line at each call's start and one at its end, with the ID,
	// function, state, duration and, for a failure, the exit code.
	ends := make(map[string]map[string]any)
	starts := make(map[string]bool)
	for line := range strings.Lines(p.Log()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			t.Errorf("log line is not JSON with --log-format json: %q", line)
			continue
		}
		id, _ := rec["call_id"].(string)
		switch rec["msg"] {
		case "call started":
			starts[id] = true
		case "call finished":
			ends[id] = rec
		}
	}
	for _, want := range []struct {
		call  *rpc.Call
		fn    string
		state rpc.State
	}{{echo, "echo", rpc.StateSucceeded}, {failed, "sleep", rpc.StateFailed}, {long, "sleep", rpc.StateCancelled}} {
		end := ends[want.call.ID]
		if !starts[want.call.ID] || end == nil {
			t.Errorf("log of call %s (%s): start line %v, end line %v; want both", want.call.ID, want.fn, starts[want.call.ID], end != nil)
			continue
		}
		if end["fn"] != want.fn || end["state"] != string(want.state) || end["duration"] == nil {
			t.Errorf("end line of call %s = %v, want fn %s, state %s and a duration", want.call.ID, end, want.fn, want.state)
		}
		if want.state == rpc.StateFailed && end["exit_code"] == nil {
			t.Errorf("end line of failed call %s = %v, want its exit_code", want.call.ID, end)
		}
	}
}

// runtimeVersion is the Go version noded was built with, as go version
// reads it from the binary: noded_build_info's goversion label.
func runtimeVersion(t *testing.T) string {
	t.Helper()
	bin := nodetest.Noded(t)
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		t.Fatalf("go version %s: %v", bin, err)
	}
	// "<path>: go1.26.8"
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), ": ")
	return v
}

// TestGuideConfiguration follows doc/operations.md's install: the
// configuration file written with --print-config and the node's
// certificate files passes --check-config, and the same file with
// insecure = true is refused, saying to drop one or the other.
func TestGuideConfiguration(t *testing.T) {
	t.Parallel()
	files := nodetest.NewPKI(t).NodeTLS(t, "node1.example.com", "10.0.0.1")
	conf := filepath.Join(t.TempDir(), "noded.conf")
	out, err := exec.Command(nodetest.Noded(t), "--config", "", "--print-config", "--listen", "0.0.0.0:1811",
		"--cert", files.Cert, "--key", files.Key, "--client-ca", files.ClientCA).Output()
	if err != nil {
		t.Fatalf("noded --print-config: %v", err)
	}
	if err := os.WriteFile(conf, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if status, out := runNoded(t, "--config", conf, "--check-config"); status != 0 || !strings.Contains(out, "configuration is valid") {
		t.Errorf("noded --check-config of the file the guide writes: status %d, %s; want 0, valid", status, out)
	}
	insecure := strings.Replace(string(out), "insecure = false", "insecure = true", 1)
	if insecure == string(out) {
		t.Fatalf("--print-config wrote no line insecure = false:\n%s", out)
	}
	if err := os.WriteFile(conf, []byte(insecure), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, out := runNoded(t, "--config", conf, "--check-config"); status != 2 || !strings.Contains(out, "drop one or the other") {
		t.Errorf("noded --check-config with insecure = true and certificates: status %d, %s; want 2, saying to drop one", status, out)
	}
}
