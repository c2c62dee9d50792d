package noded

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/ca"
)

func TestMayCall(t *testing.T) {
	paths := []string{rpc.PathStartFunction, rpc.PathWaitForFunction, rpc.PathCancelFunction, rpc.PathReleaseFunction, rpc.PathListFunctions, rpc.PathListCalls, rpc.PathVersion, PathMetrics, "/Nope"}
	reads := map[string]bool{rpc.PathWaitForFunction: true, rpc.PathListFunctions: true, rpc.PathListCalls: true, rpc.PathVersion: true, PathMetrics: true}
	for _, role := range []rpc.Role{rpc.RoleMaster, rpc.RoleObserver, rpc.RoleNode, "", "admin"} {
		for _, p := range paths {
			// No role may call a procedure that does not exist.
			want := p != "/Nope" && (role == rpc.RoleMaster || role == rpc.RoleObserver && reads[p])
			if got := mayCall(role, p); got != want {
				t.Errorf("mayCall(%q, %s) = %v, want %v", role, p, got, want)
			}
		}
	}
}

// TestCertStoreReload checks that a reload puts good files in force and
// refuses bad ones, keeping those in force, with the store's clock.
func TestCertStoreReload(t *testing.T) {
	p := nodetest.NewPKI(t)
	crt, key := p.IssueRequest(t, ca.IssueRequest{Name: "n", Role: rpc.RoleNode, Days: 10})
	files := tlsFiles{cert: crt, key: key, clientCA: p.CA()}
	now := time.Now()
	s, err := newCertStore(files, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	first := s.current().SerialNumber

	p.Issue(t, rpc.RoleNode, "n")
	leaf, err := s.reload()
	if err != nil || leaf.SerialNumber.Cmp(first) == 0 || s.current() != leaf {
		t.Fatalf("reload of a new certificate = %v, %v; want the new one in force", leaf, err)
	}
	second := leaf.SerialNumber
	goodCert, _ := os.ReadFile(files.cert)
	goodCA, _ := os.ReadFile(files.clientCA)

	for _, tt := range []struct {
		name  string
		spoil func()
		at    time.Time
		want  string
	}{
		{"expired by the clock", func() {}, now.Add(400 * 24 * time.Hour), "not now"},
		{"garbage certificate", func() { os.WriteFile(files.cert, []byte("junk"), 0o644) }, now, "loading --cert"},
		{"missing CA", func() { os.Remove(files.clientCA) }, now, "reading --client-ca"},
	} {
		tt.spoil()
		now = tt.at
		if _, err := s.reload(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("reload with %s = %v; want an error saying %q", tt.name, err, tt.want)
		}
		if got := s.current().SerialNumber; got.Cmp(second) != 0 {
			t.Errorf("after a refused reload (%s) serial %x is in force, want %x", tt.name, got, second)
		}
		now = time.Now()
		os.WriteFile(files.cert, goodCert, 0o644)
		os.WriteFile(files.clientCA, goodCA, 0o644)
	}
	cfg, err := s.listenerConfig().GetConfigForClient(nil)
	if err != nil || cfg.Certificates[0].Leaf.SerialNumber.Cmp(second) != 0 || !cfg.SessionTicketsDisabled {
		t.Errorf("GetConfigForClient = %v; want the configuration in force, without session tickets", err)
	}
}
