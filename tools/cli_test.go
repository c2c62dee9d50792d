package tools

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestMain(m *testing.M) { nodetest.Main(m) }

// noderpcPackage is the command the tests of the binary build.
const noderpcPackage = "github.com/noderpc/noderpc/tools/noderpc"

// fast are global flags that detect a dead node in about a second.
var fast = []string{"--insecure", "--socket-timeout", "1s", "--unreachable-after", "2s"}

// run runs noderpc in-process with the fast global flags and args.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append(append([]string(nil), fast...), args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// startNode starts a noded with executable functions: ok, fail (logs two
// lines, exits 3) and slowlog (logs three lines 0.4s apart).
func startNode(t *testing.T) *nodetest.Node {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{Functions: map[string]string{
		"fail":    `echo "checking disk" >&2; echo "disk is full" >&2; exit 3`,
		"slowlog": `for i in 1 2 3; do echo "step $i" >&2; sleep 0.4; done; echo '"done"'`,
	}})
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	n := nodetest.Start(t, nodetest.Options{})
	addr := n.Addr()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	return addr
}

var unreachableLine = regexp.MustCompile(`^127\.0\.0\.1:\d+: unreachable after \d+ attempts? over [0-9.]+(µs|ms|s): connection refused$`)

func TestCallExitStatusAndOutput(t *testing.T) {
	n := startNode(t)
	dead := deadAddr(t)
	for _, tc := range []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string         // exact, if not empty
		wantStderr *regexp.Regexp // matched against stderr, if not nil
	}{
		{"success", []string{"call", n.Addr(), "echo", `{"a": 1}`}, "", ExitOK, `{"a":1}` + "\n", nil},
		{"args from stdin", []string{"call", n.Addr(), "echo", "-"}, `[1,2,3]`, ExitOK, "[1,2,3]\n", nil},
		{"no args", []string{"call", n.Addr(), "echo"}, "", ExitOK, "null\n", nil},
		{"function failed", []string{"call", n.Addr(), "fail"}, "", ExitFailed, "",
			regexp.MustCompile(`(?s)checking disk\ndisk is full\n127\.0\.0\.1:\d+: call \S+ \(fail\): function_failed: .*\(exit code 3\)`)},
		{"unknown function", []string{"call", n.Addr(), "nope"}, "", ExitFailed, "", regexp.MustCompile(`StartFunction: unknown_function: no function "nope"`)},
		{"dead node", []string{"call", dead, "echo"}, "", ExitUnreachable, "", unreachableLine},
		{"timeout ends the wait", []string{"call", "--timeout", "300ms", n.Addr(), "sleep", `{"seconds": 5}`}, "", ExitFailed, "",
			regexp.MustCompile(`stopped waiting after --timeout 300ms; call \S+ \(sleep\) is still running on 127\.0\.0\.1:\d+\n.*wait for it:  noderpc --insecure wait 127\.0\.0\.1:\d+ \S+\n.*cancel it:    noderpc --insecure cancel 127\.0\.0\.1:\d+ \S+$`)},
		{"aborted", []string{"call", "--abort-after", "200ms", n.Addr(), "sleep", `{"seconds": 5}`}, "", ExitFailed, "", regexp.MustCompile(`aborted`)},
		{"wait on a dead node", []string{"wait", dead, rpc.NewCallID(1, 2, time.Now()).String()}, "", ExitUnreachable, "",
			regexp.MustCompile(`unreachable after .*\n.*wait for it:  noderpc --insecure wait .*\n.*cancel it:    noderpc --insecure cancel `)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Errorf("noderpc %q exited %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.wantCode, stdout, stderr)
			}
			if tc.wantStdout != "" && stdout != tc.wantStdout {
				t.Errorf("noderpc %q printed %q, want %q", tc.args, stdout, tc.wantStdout)
			}
			if tc.wantStderr != nil && !tc.wantStderr.MatchString(strings.TrimSpace(stderr)) {
				t.Errorf("noderpc %q stderr = %q, want a match of %s", tc.args, stderr, tc.wantStderr)
			}
		})
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	n := startNode(t)
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"call"},
		{"call", n.Addr()},
		{"call", n.Addr(), "echo", "{not json"},
		{"call", n.Addr(), "echo", "1", "2"},
		{"call", "--no-such-flag", n.Addr(), "echo"},
		{"wait", n.Addr()},
		{"wait", n.Addr(), "not-an-id"},
		{"start", n.Addr(), "a:1", "echo"},
		{"list"},
		{"calls"},
		{"functions"},
		{"functions", "no-port"},
		{"ping", "no-port"},
	} {
		code, stdout, stderr := run(t, "", args...)
		if code != ExitUsage || stderr == "" || stdout != "" {
			t.Errorf("noderpc %q = exit %d, stdout %q, stderr %q; want exit 2 and a message on stderr only", args, code, stdout, stderr)
		}
	}
	// Without --insecure nothing is sent: TLS does not exist yet, and
	// plain HTTP must be asked for.
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"call", n.Addr(), "echo"}, nil, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "--insecure") {
		t.Errorf("noderpc call without --insecure = exit %d, stderr %q; want 2 and a hint to pass --insecure", code, errb.String())
	}
}

func TestFanOutOutput(t *testing.T) {
	a, b := startNode(t), startNode(t)
	dead := deadAddr(t)
	code, stdout, stderr := run(t, "", "call", "--ordered", a.Addr(), dead, b.Addr(), "echo", `"hi"`)
	if code != ExitUnreachable {
		t.Errorf("call on two live nodes and a dead one exited %d, want 3", code)
	}
	if want := fmt.Sprintf("%s: \"hi\"\n%s: \"hi\"\n", a.Addr(), b.Addr()); stdout != want {
		t.Errorf("stdout = %q, want %q (one line per node, in order)", stdout, want)
	}
	if !unreachableLine.MatchString(strings.TrimSpace(stderr)) || !strings.HasPrefix(stderr, dead+": ") {
		t.Errorf("stderr = %q, want one unreachable line for %s", stderr, dead)
	}
}

func TestJSONOutput(t *testing.T) {
	n := startNode(t)
	dead := deadAddr(t)
	code, stdout, _ := run(t, "", "--json", "call", "--ordered", n.Addr(), dead, "slowlog")
	if code != ExitUnreachable {
		t.Errorf("--json call exited %d, want 3", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("--json call printed %q, want two lines", stdout)
	}
	var live, gone callOutput
	if err := json.Unmarshal([]byte(lines[0]), &live); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &gone); err != nil {
		t.Fatal(err)
	}
	if !live.OK || live.Node != n.Addr() || live.Call == nil || string(live.Call.Result) != `"done"` ||
		strings.Join(live.Log, "|") != "step 1|step 2|step 3" {
		t.Errorf("live node's line = %s, want ok, the result and the three log lines", lines[0])
	}
	if gone.OK || gone.Node != dead || gone.Error == nil || gone.Error.Kind != rpc.KindUnreachable {
		t.Errorf("dead node's line = %s, want ok false and kind unreachable", lines[1])
	}

	code, stdout, _ = run(t, "", "--json", "ping", n.Addr())
	var ping struct {
		Node       string  `json:"node"`
		OK         bool    `json:"ok"`
		RTTSeconds float64 `json:"rtt_seconds"`
		BootID     string  `json:"boot_id"`
	}
	if err := json.Unmarshal([]byte(stdout), &ping); err != nil || code != ExitOK || !ping.OK || ping.RTTSeconds <= 0 || ping.BootID == "" {
		t.Errorf("--json ping = exit %d, %q (%v), want ok with an RTT and a boot id", code, stdout, err)
	}

	code, stdout, _ = run(t, "", "--json", "version", n.Addr())
	var ver struct {
		OK      bool                `json:"ok"`
		Version rpc.VersionResponse `json:"version"`
	}
	if err := json.Unmarshal([]byte(stdout), &ver); err != nil || code != ExitOK || ver.Version.Protocol != rpc.ProtocolVersion || ver.Version.BootID != ping.BootID {
		t.Errorf("--json version = exit %d, %q (%v), want protocol %d and the boot id ping saw", code, stdout, err, rpc.ProtocolVersion)
	}
}

func TestStartListWaitCancelRelease(t *testing.T) {
	n := startNode(t)

	code, stdout, stderr := run(t, "", "start", n.Addr(), "sleep", `{"seconds": 60}`)
	id := strings.TrimSpace(stdout)
	if _, err := rpc.ParseCallID(id); code != ExitOK || err != nil {
		t.Fatalf("start = exit %d, stdout %q, stderr %q; want a call ID", code, stdout, stderr)
	}

	code, stdout, _ = run(t, "", "--json", "calls", n.Addr())
	var list struct {
		OK    bool              `json:"ok"`
		Calls []rpc.CallSummary `json:"calls"`
	}
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || code != ExitOK || len(list.Calls) != 1 || list.Calls[0].ID != id || list.Calls[0].State != rpc.StateRunning {
		t.Errorf("--json calls = exit %d, %q (%v); want the running call %s", code, stdout, err, id)
	}
	// list is the alias kept for scripts.
	for _, cmd := range []string{"calls", "list"} {
		if code, stdout, _ = run(t, "", cmd, n.Addr()); code != ExitOK || !strings.Contains(stdout, id) || !strings.Contains(stdout, "running") {
			t.Errorf("%s = exit %d, %q; want a row for %s", cmd, code, stdout, id)
		}
	}

	if code, stdout, stderr = run(t, "", "cancel", n.Addr(), id); code != ExitOK || !strings.Contains(stdout, "cancelled") {
		t.Errorf("cancel = exit %d, stdout %q, stderr %q; want the call cancelled", code, stdout, stderr)
	}
	// wait reports the cancelled call (a failure) and releases it.
	if code, _, stderr = run(t, "", "wait", n.Addr(), id); code != ExitFailed || !strings.Contains(stderr, "cancelled") {
		t.Errorf("wait on a cancelled call = exit %d, stderr %q; want 1 and cancelled", code, stderr)
	}
	if code, _, stderr = run(t, "", "release", n.Addr(), id); code != ExitFailed || !strings.Contains(stderr, "unknown_call") {
		t.Errorf("release after wait released the call = exit %d, stderr %q; want 1 and unknown_call", code, stderr)
	}

	// A fire-and-forget start, waited for and kept, then released.
	_, stdout, _ = run(t, "", "start", n.Addr(), "echo", `"kept"`)
	id = strings.TrimSpace(stdout)
	if code, stdout, _ = run(t, "", "wait", "--keep", n.Addr(), id); code != ExitOK || stdout != "\"kept\"\n" {
		t.Errorf("wait --keep = exit %d, %q; want the echo", code, stdout)
	}
	if code, stdout, stderr = run(t, "", "release", n.Addr(), id); code != ExitOK || !strings.Contains(stdout, "released") {
		t.Errorf("release of a kept call = exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// An ID of an earlier daemon of this node: the call is lost.
	old := rpc.NewCallID(n.PID(), 1, time.Now().Add(-time.Hour)).String()
	if code, _, stderr = run(t, "", "wait", n.Addr(), old); code != ExitUnreachable || !strings.Contains(stderr, "lost") {
		t.Errorf("wait on a lost call = exit %d, stderr %q; want 3 and lost", code, stderr)
	}
}

func TestPing(t *testing.T) {
	n := startNode(t)
	dead := deadAddr(t)
	code, stdout, stderr := run(t, "", "ping", n.Addr(), dead)
	if code != ExitUnreachable {
		t.Errorf("ping of a live and a dead node exited %d, want 3", code)
	}
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+: answered in \S+, boot id [0-9a-f-]{36}, up \d+s\n$`).MatchString(stdout) {
		t.Errorf("ping stdout = %q, want one answered line", stdout)
	}
	if want := dead + ": unreachable after 1 attempt over"; !strings.HasPrefix(stderr, want) {
		t.Errorf("ping stderr = %q, want it to start %q (ping does not retry)", stderr, want)
	}
}

func TestHelpOnEverySubcommand(t *testing.T) {
	for _, c := range commands {
		var out, errb bytes.Buffer
		code := Run(context.Background(), []string{c.name, "--help"}, nil, &out, &errb)
		example := "noderpc --insecure " + c.name
		if c.local {
			example = "noderpc " + c.name
		}
		if code != ExitOK || !strings.HasPrefix(out.String(), "Usage: noderpc [global flags] "+c.name) ||
			!strings.Contains(out.String(), "Example") || !strings.Contains(out.String(), example) {
			t.Errorf("noderpc %s --help = exit %d, %q; want usage with examples on stdout", c.name, code, out.String())
		}
	}
	var out bytes.Buffer
	if code := Run(context.Background(), []string{"--help"}, nil, &out, &out); code != ExitOK || strings.Count(out.String(), "Usage: noderpc") != 1 {
		t.Errorf("noderpc --help = exit %d, %q; want the usage once", code, out.String())
	}
}

// A subcommand's --help needs no certificate: it talks to no one.
func TestSubcommandHelpWithoutCertificates(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv(EnvCert, "")
	t.Setenv(EnvKey, "")
	t.Setenv(EnvCA, "")
	for _, args := range [][]string{
		{"config", "set", "--help"},
		{"config", "get", "--help"},
		{"config", "delete", "-h"},
		{"bench", "sessions", "--help"},
	} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, nil, &out, &errb)
		if code != ExitOK || !strings.HasPrefix(out.String(), "Usage: noderpc [global flags] "+args[0]) {
			t.Errorf("noderpc %s = exit %d, stdout %q, stderr %q; want the command's usage without certificates", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
}

func TestTerminalShowsElapsedAndLogLive(t *testing.T) {
	real := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	t.Cleanup(func() { isTerminal = real })
	n := startNode(t)

	code, stdout, stderr := run(t, "", "call", n.Addr(), "slowlog")

	if code != ExitOK {
		t.Fatalf("call slowlog = exit %d, stderr %q", code, stderr)
	}
	status := "\r\x1b[K… slowlog on " + n.Addr() + ": "
	if strings.Count(stdout, status) < 3 {
		t.Errorf("stdout %q shows the status line %d times in a 1.2s call, want it redrawn", stdout, strings.Count(stdout, status))
	}
	// The lines, each after the status line was erased (the first may
	// come before the status line is first drawn: the start's round
	// wakes on it), then the result on a clean line.
	for _, want := range []string{"step 1\n", "\r\x1b[Kstep 2\n", "\r\x1b[Kstep 3\n", "\r\x1b[K\"done\"\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %q", stdout, want)
		}
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing: on a terminal the log goes to stdout", stderr)
	}
}

func TestBinaryExitStatus(t *testing.T) {
	noderpc := nodetest.Binary(t, noderpcPackage)
	n := startNode(t)
	dead := deadAddr(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"call", n.Addr(), "echo", `"x"`}, ExitOK},
		{[]string{"call", n.Addr(), "fail"}, ExitFailed},
		{[]string{"call", n.Addr()}, ExitUsage},
		{[]string{"call", dead, "echo"}, ExitUnreachable},
	} {
		cmd := exec.Command(noderpc, append(append([]string(nil), fast...), tc.args...)...)
		out, err := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != tc.want {
			t.Errorf("noderpc %q exited %d (%v), want %d\n%s", tc.args, got, err, tc.want, out)
		}
	}
}
