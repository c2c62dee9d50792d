package nodetest

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/ca"
)

// PKI is a cluster CA of a test's own, in a directory of its own, made
// by package ca as noderpc certs makes one: tests of TLS use the
// certificates operators get.
type PKI struct {
	dir string
}

// NewPKI makes a CA in a temporary directory of t.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{dir: t.TempDir()}
	if _, err := ca.Init(p.dir, ca.InitOptions{}); err != nil {
		t.Fatalf("ca.Init(%s): %v", p.dir, err)
	}
	return p
}

// Dir returns the directory of the CA and of the certificates it issued.
func (p *PKI) Dir() string { return p.dir }

// CA returns the CA's certificate file: what noded's --client-ca and a
// client's root are.
func (p *PKI) CA() string { return filepath.Join(p.dir, "ca.crt") }

// Issue issues a certificate of role for name, with sans as more DNS
// names or IP addresses, and returns its certificate and key files. A
// certificate of that name is replaced.
func (p *PKI) Issue(t testing.TB, role rpc.Role, name string, sans ...string) (crt, key string) {
	t.Helper()
	return p.IssueRequest(t, ca.IssueRequest{Name: name, Role: role, SANs: sans, Force: true})
}

// IssueRequest issues the certificate r asks for (a validity of its own,
// say) and returns its certificate and key files.
func (p *PKI) IssueRequest(t testing.TB, r ca.IssueRequest) (crt, key string) {
	t.Helper()
	files, err := ca.Issue(p.dir, r)
	if err != nil {
		t.Fatalf("ca.Issue(%s, %+v): %v", p.dir, r, err)
	}
	return files[0], files[1]
}

// NodeTLS issues a node certificate for name and returns what
// Options.TLS needs to serve with it.
func (p *PKI) NodeTLS(t testing.TB, name string, sans ...string) *TLS {
	t.Helper()
	crt, key := p.Issue(t, rpc.RoleNode, name, sans...)
	return &TLS{Cert: crt, Key: key, ClientCA: p.CA()}
}

// LoadCert loads the certificate file crt with its key (the file of the
// same name ending .key for .crt), fails t unless both load and match,
// and returns the certificate.
func LoadCert(t testing.TB, crt string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(crt, strings.TrimSuffix(crt, ".crt")+".key")
	if err != nil {
		t.Fatalf("loading %s and its key: %v", crt, err)
	}
	return pair.Leaf
}

// CheckIdentity fails t unless the certificate c, named name in
// messages, is of role and bears exactly the host names dns and the IP
// addresses ips, in that order.
func CheckIdentity(t testing.TB, name string, c *x509.Certificate, role rpc.Role, dns, ips []string) {
	t.Helper()
	if got, err := rpc.RoleOf(c); err != nil || got != role {
		t.Errorf("%s: role %q, %v; want %s", name, got, err, role)
	}
	var gotIPs []string
	for _, ip := range c.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	if !slices.Equal(c.DNSNames, dns) || !slices.Equal(gotIPs, ips) {
		t.Errorf("%s: names %v %v, want %v %v", name, c.DNSNames, gotIPs, dns, ips)
	}
}
