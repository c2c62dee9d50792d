package tools

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
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

func TestCertsIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCerts(t, "init", dir)
	mustCerts(t, "issue", "--dir", dir, "--node", "node1.example.com", "--san", "10.0.0.1", "--san", "node1")
	mustCerts(t, "issue", "--dir", dir, "--master", "master1")
	mustCerts(t, "issue", "--dir", dir, "--observer", "monitoring", "--days", "7")

	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ca := loadCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("ca.crt: IsCA %v, key %v; want an ECDSA P-256 CA", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if years := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; years < 9.9 {
		t.Errorf("CA valid for %.1f years, want 10", years)
	}

	for _, tt := range []struct {
		name      string
		role      rpc.Role
		usage     x509.ExtKeyUsage
		wantDNS   []string
		wantIPs   []string
		wantDays  int
		verifyFor string // a host name the certificate must be valid for; "" for clients
	}{
		{"node1.example.com", rpc.RoleNode, x509.ExtKeyUsageServerAuth, []string{"node1.example.com", "node1"}, []string{"127.0.0.1", "10.0.0.1"}, DefaultCertDays, "10.0.0.1"},
		{"master1", rpc.RoleMaster, x509.ExtKeyUsageClientAuth, nil, nil, DefaultCertDays, ""},
		{"monitoring", rpc.RoleObserver, x509.ExtKeyUsageClientAuth, nil, nil, 7, ""},
	} {
		crt := filepath.Join(dir, tt.name+".crt")
		c := loadCert(t, crt)
		if role, err := rpc.RoleOf(c); err != nil || role != tt.role {
			t.Errorf("%s: role %q, %v; want %s", tt.name, role, err, tt.role)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{tt.usage}) {
			t.Errorf("%s: extended key usages %v, want only %v", tt.name, c.ExtKeyUsage, tt.usage)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(c.DNSNames, tt.wantDNS) || !slices.Equal(ips, tt.wantIPs) {
			t.Errorf("%s: names %v %v, want %v %v", tt.name, c.DNSNames, ips, tt.wantDNS, tt.wantIPs)
		}
		if got, want := c.NotAfter.Sub(c.NotBefore), time.Duration(tt.wantDays)*24*time.Hour+clockSkew; got != want {
			t.Errorf("%s: valid for %s, want %s (%d days and the clock skew)", tt.name, got, want, tt.wantDays)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.verifyFor, KeyUsages: []x509.ExtKeyUsage{tt.usage}}); err != nil {
			t.Errorf("%s does not verify against ca.crt for %q: %v", tt.name, tt.verifyFor, err)
		}
		for file, want := range map[string]os.FileMode{crt: 0o644, strings.TrimSuffix(crt, ".crt") + ".key": 0o600} {
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, %v; want %v", file, fi.Mode().Perm(), err, want)
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// Nothing but the certificates and keys: no temporary file is left.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 8 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %q, want the CA's and three certificates' files only", dir, names)
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
