package master_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestLoadTLS(t *testing.T) {
	p := nodetest.NewPKI(t)
	p.Issue(t, rpc.RoleMaster, "m")
	p.Issue(t, rpc.RoleNode, "n")
	f := func(name string) string { return filepath.Join(p.Dir(), name) }
	cfg, err := master.LoadTLS(f("m.crt"), f("m.key"), f("ca.crt"))
	if err != nil || cfg.MinVersion != tls.VersionTLS13 || len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("LoadTLS of a master certificate = %+v, %v; want TLS 1.3 with the certificate and the CA", cfg, err)
	}
	for _, tt := range []struct {
		name, crt, key, ca, want string
	}{
		{"node certificate", f("n.crt"), f("n.key"), f("ca.crt"), "not a client certificate"},
		{"key of another certificate", f("m.crt"), f("n.key"), f("ca.crt"), "private key does not match"},
		{"CA file without a certificate", f("m.crt"), f("m.key"), f("m.key"), "holds no PEM certificate"},
		{"missing CA", f("m.crt"), f("m.key"), f("nope.crt"), "no such file"},
	} {
		if _, err := master.LoadTLS(tt.crt, tt.key, tt.ca); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadTLS with a %s = %v; want an error saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := master.New("n:1811", master.Options{TLS: cfg, Insecure: true}); err == nil {
		t.Error("New with both TLS and Insecure succeeded; want an error")
	}
	if _, err := master.New("n:1811", master.Options{}); err == nil || !strings.Contains(err.Error(), "LoadTLS") {
		t.Errorf("New with neither TLS nor Insecure = %v; want an error pointing at LoadTLS", err)
	}
}

// TestServerNameOverride calls a node at an address its certificate does
// not name: refused by default, accepted when Options.TLS.ServerName
// names the node.
func TestServerNameOverride(t *testing.T) {
	p := nodetest.NewPKI(t)
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "m")
	n := nodetest.Start(t, nodetest.Options{TLS: p.NodeTLS(t, "node-b")})
	_, port, _ := net.SplitHostPort(n.Addr())
	addr := net.JoinHostPort("localhost", port)
	cfg, err := master.LoadTLS(mCrt, mKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := master.New(addr, master.Options{TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(ctx); err == nil {
		t.Errorf("Version of %s presenting node-b's certificate succeeded; want it refused", addr)
	}
	named := cfg.Clone()
	named.ServerName = "node-b"
	c, err = master.New(addr, master.Options{TLS: named})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Errorf("Version of %s with ServerName node-b: %v", addr, err)
	}
}
