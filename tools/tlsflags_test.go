package tools

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
)

// TestTLSFlags checks where the CLI finds its certificate: flags first,
// then the environment, then the default directory; and that it says
// what to pass when it finds none.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", dir)
	mustCerts(t, "issue", "--dir", dir, "--master", "m")
	mustCerts(t, "issue", "--dir", dir, "--node", "n")
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv(EnvCert, "")
	t.Setenv(EnvKey, "")
	t.Setenv(EnvCA, "")
	dead := "127.0.0.1:1" // nothing listens: only the flags are checked

	args := []string{"--socket-timeout", "100ms", "--unreachable-after", "100ms", "version", dead}
	code, _, stderr := runGlobal(args...)
	if code != ExitUsage || !strings.Contains(stderr, "no --cert, --key, --ca") || !strings.Contains(stderr, "--insecure") {
		t.Errorf("noderpc version without certificates = %d, %q; want 2 naming the missing flags and --insecure", code, stderr)
	}
	// The default directory.
	noderpcDir := filepath.Join(config, "noderpc")
	os.MkdirAll(noderpcDir, 0o700)
	for src, dst := range map[string]string{"m.crt": "client.crt", "m.key": "client.key", "ca.crt": "ca.crt"} {
		b, _ := os.ReadFile(filepath.Join(dir, src))
		os.WriteFile(filepath.Join(noderpcDir, dst), b, 0o600)
	}
	if code, _, stderr := runGlobal(args...); code != ExitUnreachable {
		t.Errorf("noderpc version with ~/.config/noderpc = %d, %q; want 3 (the files are found, the node is dead)", code, stderr)
	}
	// The environment wins over the directory: a certificate it names
	// that does not exist is refused.
	t.Setenv(EnvCert, filepath.Join(dir, "missing.crt"))
	t.Setenv(EnvKey, filepath.Join(dir, "n.key"))
	if code, _, stderr := runGlobal(args...); code != ExitUsage || !strings.Contains(stderr, "missing.crt") {
		t.Errorf("noderpc version with a missing certificate in $%s = %d, %q; want 2 naming it", EnvCert, code, stderr)
	}
	// A flag wins over the environment.
	flagArgs := append([]string{"--cert", filepath.Join(dir, "m.crt"), "--key", filepath.Join(dir, "m.key")}, args...)
	if code, _, stderr := runGlobal(flagArgs...); code != ExitUnreachable {
		t.Errorf("noderpc --cert --key version = %d, %q; want 3", code, stderr)
	}
	if code, _, stderr := runGlobal(append([]string{"--insecure"}, flagArgs...)...); code != ExitUsage || !strings.Contains(stderr, "drop one or the other") {
		t.Errorf("noderpc --insecure --cert = %d, %q; want 2", code, stderr)
	}
	// certs needs no certificate.
	t.Setenv(EnvCert, "")
	if code, _, stderr := runCerts("issue", "--dir", dir, "--observer", "o"); code != ExitOK {
		t.Errorf("noderpc certs issue with no client certificate = %d, %q; want 0", code, stderr)
	}
}

func runGlobal(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCLIOverTLS runs commands against a node serving HTTPS: a master
// may call, an observer may list but not start.
func TestCLIOverTLS(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", dir)
	mustCerts(t, "issue", "--dir", dir, "--node", "localhost")
	mustCerts(t, "issue", "--dir", dir, "--master", "m")
	mustCerts(t, "issue", "--dir", dir, "--observer", "o")
	f := func(name string) string { return filepath.Join(dir, name) }
	n := nodetest.Start(t, nodetest.Options{TLS: &nodetest.TLS{Cert: f("localhost.crt"), Key: f("localhost.key"), ClientCA: f("ca.crt")}})
	_, port, _ := net.SplitHostPort(n.Addr())
	node := net.JoinHostPort("localhost", port)

	as := func(who string, args ...string) (int, string, string) {
		return runGlobal(append([]string{"--cert", f(who + ".crt"), "--key", f(who + ".key"), "--ca", f("ca.crt")}, args...)...)
	}
	if code, out, stderr := as("m", "call", node, "echo", `{"over":"tls"}`); code != ExitOK || out != `{"over":"tls"}`+"\n" {
		t.Errorf("call echo as master = %d, %q, %q", code, out, stderr)
	}
	// bench --connect makes its first contacts over TLS, and says why
	// it has no dial floor (a bare plain connection) beside them.
	code, out, stderr := as("m", "--json", "bench", "--connect", "--count", "2", "--rounds", "1", "--spawn-floor-bin", "/nonexistent", "--min-floor-bin", "/nonexistent", node)
	var r struct {
		Connect          *phaseJSON `json:"connect"`
		DialFloor        *phaseJSON `json:"dial_floor"`
		DialFloorMissing string     `json:"dial_floor_missing"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != ExitOK || r.Connect == nil || r.Connect.Successes != 1 || r.DialFloor != nil || !strings.Contains(r.DialFloorMissing, "TLS") {
		t.Errorf("bench --connect over TLS = %d, %q (%v), %q; want 0, one connect success (one node, one caller) and no dial floor, for TLS", code, out, err, stderr)
	}
	if code, out, stderr := as("o", "--json", "start", node, "echo"); code != ExitFailed || !strings.Contains(out, `"kind":"forbidden"`) {
		t.Errorf("start as observer = %d, %q, %q; want 1 and kind forbidden", code, out, stderr)
	}
	if code, _, stderr := as("o", "list", node); code != ExitOK {
		t.Errorf("list as observer = %d, %q; want 0", code, stderr)
	}
	// A node certificate is a client certificate too (a node says hello
	// to masterd with it), and noded refuses its role: forbidden.
	if code, _, stderr := as("localhost", "list", node); code != ExitFailed || !strings.Contains(stderr, "has role node") {
		t.Errorf("list with the node's own certificate = %d, %q; want 1, forbidden for the node role", code, stderr)
	}
	// A client of another CA is refused by the node; the CLI says so in
	// one line and does not retry for --unreachable-after.
	other := t.TempDir()
	mustCerts(t, "init", other)
	mustCerts(t, "issue", "--dir", other, "--master", "m")
	start := time.Now()
	code, _, stderr = runGlobal("--cert", filepath.Join(other, "m.crt"), "--key", filepath.Join(other, "m.key"), "--ca", f("ca.crt"), "version", node)
	if code != ExitFailed || !strings.Contains(stderr, "the node refused this client's certificate") || time.Since(start) > 3*time.Second {
		t.Errorf("version with another CA's master certificate = %d, %q after %s; want 1 at once, refused", code, stderr, time.Since(start))
	}
}
