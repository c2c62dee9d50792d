package service

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/ca"
)

// TestCertStoreReload checks that a reload puts good files in force and
// refuses bad ones, keeping those in force, with the store's clock.
func TestCertStoreReload(t *testing.T) {
	p := nodetest.NewPKI(t)
	crt, key := p.IssueRequest(t, ca.IssueRequest{Name: "n", Role: rpc.RoleNode, Days: 10})
	files := TLSFiles{Cert: crt, Key: key, ClientCA: p.CA(), Role: rpc.RoleNode}
	now := time.Now()
	s, err := NewCertStore(files, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current().SerialNumber

	p.Issue(t, rpc.RoleNode, "n")
	leaf, err := s.Reload()
	if err != nil || leaf.SerialNumber.Cmp(first) == 0 || s.Current() != leaf {
		t.Fatalf("reload of a new certificate = %v, %v; want the new one in force", leaf, err)
	}
	second := leaf.SerialNumber
	goodCert, _ := os.ReadFile(files.Cert)
	goodCA, _ := os.ReadFile(files.ClientCA)

	for _, tt := range []struct {
		name  string
		spoil func()
		at    time.Time
		want  string
	}{
		{"expired by the clock", func() {}, now.Add(400 * 24 * time.Hour), "not now"},
		{"garbage certificate", func() { os.WriteFile(files.Cert, []byte("junk"), 0o644) }, now, "loading --cert"},
		{"missing CA", func() { os.Remove(files.ClientCA) }, now, "reading --client-ca"},
	} {
		tt.spoil()
		now = tt.at
		if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("reload with %s = %v; want an error saying %q", tt.name, err, tt.want)
		}
		if got := s.Current().SerialNumber; got.Cmp(second) != 0 {
			t.Errorf("after a refused reload (%s) serial %x is in force, want %x", tt.name, got, second)
		}
		now = time.Now()
		os.WriteFile(files.Cert, goodCert, 0o644)
		os.WriteFile(files.ClientCA, goodCA, 0o644)
	}
	// Node and master certificates may both serve; the role tells
	// which daemon a certificate is for.
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "m")
	if _, err := NewCertStore(TLSFiles{Cert: mCrt, Key: mKey, ClientCA: p.CA(), Role: rpc.RoleNode}, time.Now); err == nil || !strings.Contains(err.Error(), "is a master certificate; this daemon serves with a node certificate") {
		t.Errorf("a store for a node loading a master certificate = %v; want it refused by its role", err)
	}
	cfg, err := s.ListenerConfig().GetConfigForClient(nil)
	if err != nil || cfg.Certificates[0].Leaf.SerialNumber.Cmp(second) != 0 || !cfg.SessionTicketsDisabled {
		t.Errorf("GetConfigForClient = %v; want the configuration in force, without session tickets", err)
	}
}
