package tools

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// startMasterd runs a masterd serving plain HTTP with more flags, until
// the test ends, and returns its URL and process ID.
func startMasterd(t *testing.T, flags ...string) (url string, pid int) {
	t.Helper()
	m := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: flags})
	return m.URL(), m.PID()
}

func TestNodesNodeAndConfigCommands(t *testing.T) {
	noMasterAnywhere(t)
	url, _ := startMasterd(t, "--check-nodes=false")
	m := "--master=" + url
	started := time.Now().Add(-time.Minute).UTC()
	running := rpc.CallSummary{ID: "1:2:1700000000.000001:0123456789abcdef", FnName: "sleep", State: rpc.StateRunning, StartedAt: started}
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "n1", URL: "http://127.0.0.1:1811", Version: "1.2.3", Protocol: rpc.ProtocolVersion, BootID: "boot-1",
		Functions: []rpc.Function{{Name: "echo", Kind: "builtin"}, {Name: "sleep", Kind: "builtin"}}, Calls: []rpc.CallSummary{running}})
	// n1 restarts: the call of its first boot is lost.
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "n1", URL: "http://127.0.0.1:1811", Version: "1.2.3", Protocol: rpc.ProtocolVersion, BootID: "boot-2",
		Functions: []rpc.Function{{Name: "echo", Kind: "builtin"}, {Name: "sleep", Kind: "builtin"}}})
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "n2", URL: "http://127.0.0.1:1822", Version: "1.2.3", BootID: "boot-3"})

	code, stdout, stderr := run(t, "", m, "nodes")
	row := regexp.MustCompile(`(?m)^n1\s+up\s+http://127\.0\.0\.1:1811\s+[0-9.]+m?s ago\s+boot-2\s+1\.2\.3\s+2$`)
	if code != ExitOK || !strings.HasPrefix(stdout, "NAME") || !row.MatchString(stdout) || !strings.Contains(stdout, "\nn2 ") {
		t.Errorf("noderpc nodes = exit %d, %q, %q; want a table with n1 (up, 2 functions) and n2", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "", m, "--json", "nodes")
	var list struct {
		OK bool `json:"ok"`
		rpc.ListNodesResponse
	}
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || code != ExitOK || !list.OK || len(list.Nodes) != 2 || list.GroupVersion < 3 {
		t.Errorf("noderpc --json nodes = exit %d, %q (%v); want ok, two nodes, group version >= 3", code, stdout, err)
	}

	code, stdout, stderr = run(t, "", m, "config", "set", "--node", "n1", "zone=eu-west", "port=1811", `labels=["gpu"]`)
	if code != ExitOK || !strings.Contains(stdout, "configuration of n1 (3):") || !regexp.MustCompile(`zone\s+= "eu-west"\s+\(node\)`).MatchString(stdout) {
		t.Errorf("noderpc config set --node n1 = exit %d, %q, %q; want the three keys, zone a string", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "", m, "config", "set", "log_level=debug", "zone=us")
	if code != ExitOK || !strings.Contains(stdout, "group configuration (2):") {
		t.Errorf("noderpc config set (group) = exit %d, %q", code, stdout)
	}
	code, stdout, _ = run(t, "", m, "config", "get", "n1")
	if code != ExitOK || !regexp.MustCompile(`log_level\s+= "debug"\s+\(group\)`).MatchString(stdout) ||
		!regexp.MustCompile(`zone\s+= "eu-west"\s+\(node\)`).MatchString(stdout) || !regexp.MustCompile(`port\s+= 1811\s+\(node\)`).MatchString(stdout) {
		t.Errorf("noderpc config get n1 = exit %d, %q; want the group's log_level and n1's own zone and port", code, stdout)
	}
	code, stdout, _ = run(t, "", m, "--json", "config", "delete", "--node", "n1", "port")
	var cfg struct {
		OK bool `json:"ok"`
		rpc.ConfigResponse
	}
	if err := json.Unmarshal([]byte(stdout), &cfg); err != nil || code != ExitOK || cfg.Effective["port"] != nil || string(cfg.Own["zone"]) != `"eu-west"` {
		t.Errorf("noderpc --json config delete --node n1 port = exit %d, %q (%v); want port gone, zone kept", code, stdout, err)
	}

	code, stdout, stderr = run(t, "", m, "node", "n1")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^state:\s+up$`),
		regexp.MustCompile(`(?m)^boot id:\s+boot-2$`),
		regexp.MustCompile(`(?m)^version:\s+1\.2\.3 \(protocol \d+\)$`),
		regexp.MustCompile(`(?m)^functions \(2\):\n  echo\s+builtin\n  sleep\s+builtin$`),
		regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(running.ID) + `\s+sleep\s+running\s+\S+ \S+\s+LOST$`),
		regexp.MustCompile(`(?m)^  zone\s+= "eu-west"$`),
	} {
		if code != ExitOK || !want.MatchString(stdout) {
			t.Errorf("noderpc node n1 = exit %d, %q, %q; want a match of %s", code, stdout, stderr, want)
		}
	}
	code, stdout, stderr = run(t, "", m, "node", "nope")
	if code != ExitFailed || stdout != "" || !strings.Contains(stderr, "unknown_node") {
		t.Errorf("noderpc node nope = exit %d, %q, %q; want 1 and unknown_node", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "", m, "--json", "node", "nope")
	if code != ExitFailed || !strings.Contains(stdout, `"ok":false`) || !strings.Contains(stdout, `"kind":"unknown_node"`) {
		t.Errorf("noderpc --json node nope = exit %d, %q; want 1 and an unknown_node line", code, stdout)
	}
}

// call --all runs on every node masterd lists up, directly, as if they
// were given: one line per node, and a node listed up that does not
// answer is unreachable (exit 3).
func TestCallAll(t *testing.T) {
	noMasterAnywhere(t)
	url, _ := startMasterd(t, "--check-nodes=false")
	a, b := nodetest.Start(t, nodetest.Options{}), nodetest.Start(t, nodetest.Options{})
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "a", URL: a.URL(), BootID: "a1"})
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "b", URL: b.URL(), BootID: "b1"})

	code, stdout, stderr := run(t, "", "--master", url, "call", "--all", "--ordered", "echo", `"hi"`)
	if want := a.Addr() + `: "hi"` + "\n" + b.Addr() + `: "hi"` + "\n"; code != ExitOK || stdout != want {
		t.Errorf("noderpc call --all echo = exit %d, %q, %q; want %q", code, stdout, stderr, want)
	}

	dead := deadAddr(t)
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "c", URL: "http://" + dead, BootID: "c1"})
	code, stdout, stderr = run(t, "", "--master", url, "call", "--all", "--ordered", "echo", `"hi"`)
	if want := a.Addr() + `: "hi"` + "\n" + b.Addr() + `: "hi"` + "\n"; code != ExitUnreachable || stdout != want || !unreachableLine.MatchString(strings.TrimSpace(stderr)) || !strings.Contains(stderr, dead) {
		t.Errorf("noderpc call --all echo with c dead = exit %d, %q, %q; want 3, a and b on stdout, c unreachable on stderr", code, stdout, stderr)
	}

	// A node whose advertised URL this CLI cannot call (TLS, under
	// --insecure) is that node's failure; the others run.
	nodetest.SayHello(t, url, nil, rpc.HelloRequest{Node: "d", URL: "https://" + dead, BootID: "d1"})
	code, stdout, stderr = run(t, "", "--master", url, "--json", "call", "--all", "echo", `"hi"`)
	if code != ExitUnreachable || strings.Count(stdout, `"ok":true`) != 2 || !strings.Contains(stdout, `{"node":"https://`+dead+`","ok":false,"error":{"kind":"bad_request","message":"node d: URL`) || !strings.Contains(stdout, "it serves TLS") {
		t.Errorf("noderpc --json call --all with d on https = exit %d, %q, %q; want 3, a and b ok, a line saying d serves TLS", code, stdout, stderr)
	}

	empty, _ := startMasterd(t, "--check-nodes=false")
	code, _, stderr = run(t, "", "--master", empty, "call", "--all", "echo")
	if code != ExitFailed || !strings.Contains(stderr, "lists no node up: nothing was run") {
		t.Errorf("noderpc call --all with no node up = exit %d, %q; want 1 saying nothing ran", code, stderr)
	}
	code, _, stderr = run(t, "", "--master", deadMasterURL(t), "call", "--all", "echo")
	if code != ExitUnreachable || !strings.Contains(stderr, "unreachable") {
		t.Errorf("noderpc call --all with masterd dead = exit %d, %q; want 3, unreachable", code, stderr)
	}
}

// bench sessions holds a small fleet of sessions, measures masterd from
// its /proc, and times the fleet's mass expiry.
func TestBenchSessions(t *testing.T) {
	noMasterAnywhere(t)
	url, pid := startMasterd(t, "--check-nodes=false", "--session-timeout", "1s")
	var out bytes.Buffer
	code := Run(t.Context(), []string{"--insecure", "--json", "--master", url, "bench", "sessions", "--sessions", "200",
		"--duration", "500ms", "--sources", "4", "--expire", "--poll", "50ms"}, nil, &out, &out)
	var r struct {
		Requested, Established int
		HelloRate              float64 `json:"hello_rate"`
		SessionTimeout         float64 `json:"session_timeout"`
		Renewals               int64
		Errors                 map[string]int64
		Masterd                *struct {
			PID            int     `json:"pid"`
			RSSEstablished int64   `json:"rss_established"`
			CPUPerRenewal  float64 `json:"cpu_per_renewal"`
		}
		MasterdMissing string `json:"masterd_missing"`
		Expiry         *struct {
			Seconds      float64
			PastDeadline float64 `json:"past_deadline"`
			StillUp      int     `json:"still_up"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || code != ExitOK {
		t.Fatalf("noderpc bench sessions = exit %d, %q (%v); want 0 and a JSON report", code, out.String(), err)
	}
	switch {
	case r.Requested != 200 || r.Established != 200 || r.HelloRate <= 0:
		t.Errorf("report %s: want 200 sessions established at some rate", out.String())
	case r.SessionTimeout != 1 || r.Renewals < 200:
		t.Errorf("report %s: want masterd's timeout of 1s and at least one renewal per session in the window", out.String())
	case r.Masterd == nil || r.Masterd.PID != pid || r.Masterd.RSSEstablished <= 0:
		t.Errorf("report %s: want masterd's figures, of pid %d, found from its port", out.String(), pid)
	case r.Expiry == nil || r.Expiry.StillUp != 0 || r.Expiry.Seconds < 0.9 || r.Expiry.Seconds > 5 || r.Expiry.PastDeadline < 0 || r.Expiry.PastDeadline > 2:
		t.Errorf("report %s: want every node down about the session timeout (1s) after the close, and after the last deadline", out.String())
	case len(r.Errors) > 0:
		t.Errorf("report %s: want no error", out.String())
	}
}

// Over TLS the CLI presents its own certificate to masterd and checks
// masterd's against --ca, as it does a node's; an observer may read, not
// configure.
func TestMasterCommandsOverTLS(t *testing.T) {
	noMasterAnywhere(t)
	p := nodetest.NewPKI(t)
	mcrt, mkey := p.Issue(t, rpc.RoleMaster, "masterd1")
	m := nodetest.StartMasterd(t, nodetest.MasterdOptions{TLS: &nodetest.TLS{Cert: mcrt, Key: mkey, ClientCA: p.CA()}})
	as := func(role rpc.Role, name string, args ...string) (int, string, string) {
		crt, key := p.Issue(t, role, name)
		return runGlobal(append([]string{"--cert", crt, "--key", key, "--ca", p.CA(), "--master", m.URL()}, args...)...)
	}
	if code, stdout, stderr := as(rpc.RoleMaster, "admin", "config", "set", "zone=eu"); code != ExitOK || !strings.Contains(stdout, `zone = "eu"`) {
		t.Errorf("config set as a master = exit %d, %q, %q; want 0", code, stdout, stderr)
	}
	if code, stdout, stderr := as(rpc.RoleObserver, "watcher", "nodes"); code != ExitOK || !strings.HasPrefix(stdout, "NAME") {
		t.Errorf("nodes as an observer = exit %d, %q, %q; want 0 and the table", code, stdout, stderr)
	}
	if code, _, stderr := as(rpc.RoleObserver, "watcher", "config", "set", "zone=us"); code != ExitFailed || !strings.Contains(stderr, "forbidden") {
		t.Errorf("config set as an observer = exit %d, %q; want 1, forbidden", code, stderr)
	}
	// A CA masterd's certificate does not chain to.
	other := nodetest.NewPKI(t)
	crt, key := other.Issue(t, rpc.RoleMaster, "stranger")
	code, _, stderr := runGlobal("--cert", crt, "--key", key, "--ca", other.CA(), "--master", m.URL(), "nodes")
	if code != ExitFailed || !strings.Contains(stderr, "certificate") {
		t.Errorf("nodes with another CA = exit %d, %q; want 1, a certificate error", code, stderr)
	}
}
