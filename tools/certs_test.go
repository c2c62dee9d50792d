package tools

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/ca"
)

// runCerts runs noderpc certs ARGS in-process.
func runCerts(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"certs"}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

func mustCerts(t *testing.T, args ...string) {
	t.Helper()
	if code, _, stderr := runCerts(args...); code != ExitOK {
		t.Fatalf("noderpc certs %q = %d, %s", args, code, stderr)
	}
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatalf("loading %s and its key: %v", path, err)
	}
	return pair.Leaf
}

// TestCertsIssue checks that the flags of certs init and certs issue
// reach package ca (which tests the certificates themselves) and that
// every file written is named on stdout.
func TestCertsIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if code, out, stderr := runCerts("init", dir); code != ExitOK || out != "wrote "+filepath.Join(dir, "ca.crt")+"\nwrote "+filepath.Join(dir, "ca.key")+"\n" {
		t.Fatalf("noderpc certs init = %d, %q, %q; want 0 and the two files written", code, out, stderr)
	}
	if c := loadCert(t, filepath.Join(dir, "ca.crt")); c.NotAfter.Sub(c.NotBefore) < ca.DefaultCADays*24*time.Hour {
		t.Errorf("certs init: CA valid for %s, want %d days", c.NotAfter.Sub(c.NotBefore), ca.DefaultCADays)
	}
	mustCerts(t, "issue", "--dir", dir, "--node", "node1.example.com", "--san", "10.0.0.1", "--san", "node1")
	mustCerts(t, "issue", "--dir", dir, "--master", "master1")
	mustCerts(t, "issue", "--dir", dir, "--observer", "monitoring", "--days", "7")

	for _, tt := range []struct {
		name     string
		role     rpc.Role
		wantDNS  []string
		wantIPs  []string
		wantDays int
	}{
		{"node1.example.com", rpc.RoleNode, []string{"node1.example.com", "node1"}, []string{"127.0.0.1", "10.0.0.1"}, ca.DefaultCertDays},
		{"master1", rpc.RoleMaster, nil, nil, ca.DefaultCertDays},
		{"monitoring", rpc.RoleObserver, nil, nil, 7},
	} {
		c := loadCert(t, filepath.Join(dir, tt.name+".crt"))
		if role, err := rpc.RoleOf(c); err != nil || role != tt.role {
			t.Errorf("%s: role %q, %v; want %s", tt.name, role, err, tt.role)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(c.DNSNames, tt.wantDNS) || !slices.Equal(ips, tt.wantIPs) {
			t.Errorf("%s: names %v %v, want %v %v", tt.name, c.DNSNames, ips, tt.wantDNS, tt.wantIPs)
		}
		// --not-before is not given: the certificate starts a few
		// minutes before now, to allow for clock skew.
		if got, want := c.NotAfter.Sub(c.NotBefore), time.Duration(tt.wantDays)*24*time.Hour; got <= want || got > want+time.Hour {
			t.Errorf("%s: valid for %s, want %d days and a few minutes", tt.name, got, tt.wantDays)
		}
	}
}

func TestCertsNeverOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", dir)
	mustCerts(t, "issue", "--dir", dir, "--master", "m")
	key := filepath.Join(dir, "m.key")
	before, _ := os.ReadFile(key)
	beforeCA, _ := os.ReadFile(filepath.Join(dir, "ca.key"))

	for _, args := range [][]string{
		{"issue", "--dir", dir, "--master", "m"},
		{"issue", "--dir", dir, "--node", "m"},
		{"init", dir},
	} {
		code, _, stderr := runCerts(args...)
		if code != ExitFailed || !strings.Contains(stderr, "file exists (pass --force") {
			t.Errorf("noderpc certs %q over existing files = %d, %q; want 1, file exists", args, code, stderr)
		}
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("a refused issue changed the existing key")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(beforeCA, after) {
		t.Error("a refused init changed the CA key")
	}
	mustCerts(t, "issue", "--dir", dir, "--master", "m", "--force")
	if after, _ := os.ReadFile(key); bytes.Equal(before, after) {
		t.Error("issue --force kept the old key")
	}
}

func TestCertsUsage(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", dir)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{}, "want init or issue"},
		{[]string{"renew"}, "unknown certs command"},
		{[]string{"init"}, "one DIR"},
		{[]string{"issue", "--dir", dir}, "exactly one of --node, --master and --observer"},
		{[]string{"issue", "--dir", dir, "--node", "a", "--master", "b"}, "exactly one of"},
		{[]string{"issue", "--node", "a"}, "--dir is required"},
		{[]string{"issue", "--dir", dir, "--node", "../evil"}, "must be a host name"},
		{[]string{"issue", "--dir", dir, "--node", "ca"}, "must be a host name"},
		{[]string{"issue", "--dir", dir, "--node", ".hidden"}, "must be a host name"},
		{[]string{"issue", "--dir", dir, "--node", "a", "--days", "0"}, "--days must be > 0"},
		{[]string{"issue", "--dir", dir, "--node", "a", "--not-before", "yesterday"}, "want RFC 3339"},
	} {
		code, _, stderr := runCerts(tt.args...)
		if code != ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("noderpc certs %q = %d, %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
	if code, _, stderr := runCerts("issue", "--dir", t.TempDir(), "--node", "a"); code != ExitFailed || !strings.Contains(stderr, "noderpc certs init") {
		t.Errorf("issue without a CA = %d, %q; want 1 and how to make one", code, stderr)
	}
}

func TestCertsNotBefore(t *testing.T) {
	dir := t.TempDir()
	mustCerts(t, "init", dir)
	mustCerts(t, "issue", "--dir", dir, "--master", "old", "--not-before", "2020-01-01T00:00:00Z", "--days", "30")
	c := loadCert(t, filepath.Join(dir, "old.crt"))
	if want := time.Date(2020, 1, 31, 0, 0, 0, 0, time.UTC); !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", c.NotAfter, want)
	}
}

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
	// The environment wins over the directory: a node's certificate is
	// refused as a client certificate.
	t.Setenv(EnvCert, filepath.Join(dir, "n.crt"))
	t.Setenv(EnvKey, filepath.Join(dir, "n.key"))
	if code, _, stderr := runGlobal(args...); code != ExitUsage || !strings.Contains(stderr, "not a client certificate") {
		t.Errorf("noderpc version with a node certificate in $%s = %d, %q; want 2, not a client certificate", EnvCert, code, stderr)
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
	n := nodetest.StartTLS(t, nodedBin, nodetest.TLS{Cert: f("localhost.crt"), Key: f("localhost.key"), ClientCA: f("ca.crt")})
	_, port, _ := net.SplitHostPort(n.Addr)
	node := net.JoinHostPort("localhost", port)

	as := func(who string, args ...string) (int, string, string) {
		return runGlobal(append([]string{"--cert", f(who + ".crt"), "--key", f(who + ".key"), "--ca", f("ca.crt")}, args...)...)
	}
	if code, out, stderr := as("m", "call", node, "echo", `{"over":"tls"}`); code != ExitOK || out != `{"over":"tls"}`+"\n" {
		t.Errorf("call echo as master = %d, %q, %q", code, out, stderr)
	}
	if code, out, stderr := as("o", "--json", "start", node, "echo"); code != ExitFailed || !strings.Contains(out, `"kind":"forbidden"`) {
		t.Errorf("start as observer = %d, %q, %q; want 1 and kind forbidden", code, out, stderr)
	}
	if code, _, stderr := as("o", "list", node); code != ExitOK {
		t.Errorf("list as observer = %d, %q; want 0", code, stderr)
	}
	// A node certificate is refused by the CLI before any connection.
	if code, _, stderr := as("localhost", "list", node); code != ExitUsage {
		t.Errorf("list with the node's own certificate = %d, %q; want 2", code, stderr)
	}
	// A client of another CA is refused by the node; the CLI says so in
	// one line and does not retry for --unreachable-after.
	other := t.TempDir()
	mustCerts(t, "init", other)
	mustCerts(t, "issue", "--dir", other, "--master", "m")
	start := time.Now()
	code, _, stderr := runGlobal("--cert", filepath.Join(other, "m.crt"), "--key", filepath.Join(other, "m.key"), "--ca", f("ca.crt"), "version", node)
	if code != ExitFailed || !strings.Contains(stderr, "the node refused this client's certificate") || time.Since(start) > 3*time.Second {
		t.Errorf("version with another CA's master certificate = %d, %q after %s; want 1 at once, refused", code, stderr, time.Since(start))
	}
}
