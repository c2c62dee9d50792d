package master_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestLoadTLS(t *testing.T) {
	p := nodetest.NewPKI(t)
	p.Issue(t, rpc.RoleMaster, "m")
	p.Issue(t, rpc.RoleNode, "n")
	f := func(name string) string { return filepath.Join(p.Dir(), name) }
	serverOnly := serverOnlyCert(t, p, f("n.key"))
	cfg, err := master.LoadTLS(f("m.crt"), f("m.key"), f("ca.crt"))
	if err != nil || cfg.MinVersion != tls.VersionTLS13 || len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("LoadTLS of a master certificate = %+v, %v; want TLS 1.3 with the certificate and the CA", cfg, err)
	}
	for _, tt := range []struct {
		name, crt, key, ca, want string
	}{
		{"server-only certificate", serverOnly, f("n.key"), f("ca.crt"), "not a client certificate"},
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

// serverOnlyCert writes a certificate for the key in keyFile, signed by
// p's CA, that may serve but not call (as node certificates were issued
// before nodes said hello to masterd), and returns its file.
func serverOnlyCert(t *testing.T, p *nodetest.PKI, keyFile string) string {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			t.Fatalf("%s holds no PEM block", name)
		}
		return b.Bytes
	}
	caCert, err := x509.ParseCertificate(read(p.CA()))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(read(filepath.Join(p.Dir(), "ca.key")))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(read(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{rpc.RoleNode.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.(interface{ Public() crypto.PublicKey }).Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "server-only.crt")
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}
