package tools

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// TestCertsIssue checks that the flags of certs init and certs issue
// reach package ca (which tests the certificates themselves) and that
// every file written is named on stdout.
func TestCertsIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if code, out, stderr := runCerts("init", dir); code != ExitOK || out != "wrote "+filepath.Join(dir, "ca.crt")+"\nwrote "+filepath.Join(dir, "ca.key")+"\n" {
		t.Fatalf("noderpc certs init = %d, %q, %q; want 0 and the two files written", code, out, stderr)
	}
	if c := nodetest.LoadCert(t, filepath.Join(dir, "ca.crt")); c.NotAfter.Sub(c.NotBefore) < ca.DefaultCADays*24*time.Hour {
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
		{"node1.example.com", rpc.RoleNode, []string{"node1.example.com", "node1"}, []string{"127.0.0.1", "::1", "10.0.0.1"}, ca.DefaultCertDays},
		// A master's certificate also serves masterd.
		{"master1", rpc.RoleMaster, []string{"master1"}, []string{"127.0.0.1", "::1"}, ca.DefaultCertDays},
		{"monitoring", rpc.RoleObserver, nil, nil, 7},
	} {
		c := nodetest.LoadCert(t, filepath.Join(dir, tt.name+".crt"))
		nodetest.CheckIdentity(t, tt.name, c, tt.role, tt.wantDNS, tt.wantIPs)
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
	c := nodetest.LoadCert(t, filepath.Join(dir, "old.crt"))
	if want := time.Date(2020, 1, 31, 0, 0, 0, 0, time.UTC); !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", c.NotAfter, want)
	}
}
