package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
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

func mustInit(t *testing.T, dir string, o ca.InitOptions) {
	t.Helper()
	if _, err := ca.Init(dir, o); err != nil {
		t.Fatalf("Init(%s, %+v): %v", dir, o, err)
	}
}

func mustIssue(t *testing.T, dir string, r ca.IssueRequest) {
	t.Helper()
	if _, err := ca.Issue(dir, r); err != nil {
		t.Fatalf("Issue(%s, %+v): %v", dir, r, err)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	files, err := ca.Init(dir, ca.InitOptions{})
	if want := []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")}; err != nil || !slices.Equal(files, want) {
		t.Fatalf("Init(%s) = %q, %v; want %q", dir, files, err, want)
	}
	c := nodetest.LoadCert(t, files[0])
	if !c.IsCA || !c.MaxPathLenZero || c.PublicKeyAlgorithm != x509.ECDSA || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("ca.crt: IsCA %v, MaxPathLenZero %v, key %v; want an ECDSA P-256 CA that signs leaves only", c.IsCA, c.MaxPathLenZero, c.PublicKeyAlgorithm)
	}
	if got, want := c.NotAfter.Sub(c.NotBefore), ca.DefaultCADays*24*time.Hour+ca.ClockSkew; got != want {
		t.Errorf("CA valid for %s, want %s (%d days and the clock skew)", got, want, ca.DefaultCADays)
	}
	for file, want := range map[string]os.FileMode{dir: 0o700, files[0]: 0o644, files[1]: 0o600} {
		if got := mode(t, file); got != want {
			t.Errorf("%s: mode %v, want %v", file, got, want)
		}
	}
}

func TestIssue(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, ca.InitOptions{})
	mustIssue(t, dir, ca.IssueRequest{Name: "node1.example.com", Role: rpc.RoleNode, SANs: []string{"10.0.0.1", "node1", "NODE1", "127.0.0.1"}})
	mustIssue(t, dir, ca.IssueRequest{Name: "master1", Role: rpc.RoleMaster})
	mustIssue(t, dir, ca.IssueRequest{Name: "monitoring", Role: rpc.RoleObserver, Days: 7})

	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	// A node says hello to masterd and a master calls nodes with the
	// certificate they serve with.
	serverAndClient := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, tt := range []struct {
		name      string
		role      rpc.Role
		usages    []x509.ExtKeyUsage
		wantDNS   []string
		wantIPs   []string
		wantDays  int
		verifyFor string // a host name the certificate must be valid for; "" for clients
	}{
		{"node1.example.com", rpc.RoleNode, serverAndClient, []string{"node1.example.com", "node1"}, []string{"127.0.0.1", "::1", "10.0.0.1"}, ca.DefaultCertDays, "::1"},
		{"master1", rpc.RoleMaster, serverAndClient, []string{"master1"}, []string{"127.0.0.1", "::1"}, ca.DefaultCertDays, "127.0.0.1"},
		{"monitoring", rpc.RoleObserver, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 7, ""},
	} {
		crt := filepath.Join(dir, tt.name+".crt")
		c := nodetest.LoadCert(t, crt)
		nodetest.CheckIdentity(t, tt.name, c, tt.role, tt.wantDNS, tt.wantIPs)
		if !slices.Equal(c.ExtKeyUsage, tt.usages) {
			t.Errorf("%s: extended key usages %v, want only %v", tt.name, c.ExtKeyUsage, tt.usages)
		}
		if got, want := c.NotAfter.Sub(c.NotBefore), time.Duration(tt.wantDays)*24*time.Hour+ca.ClockSkew; got != want {
			t.Errorf("%s: valid for %s, want %s (%d days and the clock skew)", tt.name, got, want, tt.wantDays)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.verifyFor, KeyUsages: tt.usages}); err != nil {
			t.Errorf("%s does not verify against ca.crt for %q: %v", tt.name, tt.verifyFor, err)
		}
		for file, want := range map[string]os.FileMode{crt: 0o644, strings.TrimSuffix(crt, ".crt") + ".key": 0o600} {
			if got := mode(t, file); got != want {
				t.Errorf("%s: mode %v, want %v", file, got, want)
			}
		}
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

func TestNeverOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, ca.InitOptions{})
	mustIssue(t, dir, ca.IssueRequest{Name: "m", Role: rpc.RoleMaster})
	key := filepath.Join(dir, "m.key")
	before, _ := os.ReadFile(key)
	beforeCA, _ := os.ReadFile(filepath.Join(dir, "ca.key"))

	if _, err := ca.Init(dir, ca.InitOptions{}); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Init over an existing CA: %v; want ErrExists", err)
	}
	for _, r := range []ca.IssueRequest{{Name: "m", Role: rpc.RoleMaster}, {Name: "m", Role: rpc.RoleNode}} {
		if _, err := ca.Issue(dir, r); !errors.Is(err, ca.ErrExists) {
			t.Errorf("Issue(%+v) over existing files: %v; want ErrExists", r, err)
		}
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("a refused Issue changed the existing key")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(beforeCA, after) {
		t.Error("a refused Init changed the CA key")
	}

	// Force replaces the key, and a key made readable by others is 0600
	// again.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	mustIssue(t, dir, ca.IssueRequest{Name: "m", Role: rpc.RoleMaster, Force: true})
	if after, _ := os.ReadFile(key); bytes.Equal(before, after) {
		t.Error("Issue with Force kept the old key")
	}
	if got := mode(t, key); got != 0o600 {
		t.Errorf("key replaced with Force: mode %v, want 0600", got)
	}
}

func TestInvalidRequests(t *testing.T) {
	dir := t.TempDir()
	mustInit(t, dir, ca.InitOptions{})
	for _, r := range []ca.IssueRequest{
		{Name: "../evil", Role: rpc.RoleNode},
		{Name: "ca", Role: rpc.RoleNode},
		{Name: ".hidden", Role: rpc.RoleMaster},
		{Name: "", Role: rpc.RoleMaster},
		{Name: "a", Role: "admin"},
		{Name: "a", Role: rpc.RoleObserver, Days: -1},
	} {
		if files, err := ca.Issue(dir, r); !errors.Is(err, ca.ErrInvalid) {
			t.Errorf("Issue(%+v) = %q, %v; want ErrInvalid", r, files, err)
		}
	}
	other := t.TempDir()
	if files, err := ca.Init(other, ca.InitOptions{Days: -1}); !errors.Is(err, ca.ErrInvalid) {
		t.Errorf("Init with -1 days = %q, %v; want ErrInvalid", files, err)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 0 {
		t.Errorf("a refused Init left %d files", len(entries))
	}
	// A missing CA is a failure, not a wrong request, and says how to
	// make one.
	if _, err := ca.Issue(t.TempDir(), ca.IssueRequest{Name: "a", Role: rpc.RoleNode}); err == nil || errors.Is(err, ca.ErrInvalid) || !strings.Contains(err.Error(), "noderpc certs init") {
		t.Errorf("Issue without a CA: %v; want an error saying how to make one", err)
	}
}

func TestNotBefore(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	mustInit(t, dir, ca.InitOptions{NotBefore: start, Days: 365})
	mustIssue(t, dir, ca.IssueRequest{Name: "old", Role: rpc.RoleMaster, NotBefore: start, Days: 30})
	for file, want := range map[string][2]time.Time{
		"ca.crt":  {start, start.AddDate(0, 0, 365)},
		"old.crt": {start, time.Date(2020, 1, 31, 0, 0, 0, 0, time.UTC)},
	} {
		c := nodetest.LoadCert(t, filepath.Join(dir, file))
		if !c.NotBefore.Equal(want[0]) || !c.NotAfter.Equal(want[1]) {
			t.Errorf("%s: valid %s to %s, want %s to %s", file, c.NotBefore, c.NotAfter, want[0], want[1])
		}
	}
}
