package service

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// TLSFiles name the files of a daemon's TLS identity, as given by
// --cert, --key and --client-ca. They are read at start and again on
// SIGHUP.
type TLSFiles struct {
	Cert, Key, ClientCA string
	// Role is the role the certificate must carry: noded serves as a
	// node, masterd as a master. Now that both kinds may serve and call,
	// the role is what keeps one daemon from being run with the other's
	// identity.
	Role rpc.Role
	// IssueHint is the command that issues a certificate the daemon can
	// serve with, quoted in the error for one it cannot
	// ("noderpc certs issue --node NAME").
	IssueHint string
}

// CertStore holds the TLS configuration a daemon serves with and swaps
// it on reload. Every new handshake takes the configuration current at
// that moment; connections already open keep the one they were made
// with, so requests in flight go on across a rotation.
type CertStore struct {
	files TLSFiles
	// now is the clock certificates are checked against when loaded.
	now func() time.Time
	cur atomic.Pointer[tls.Config]
}

// NewCertStore loads files; a daemon does not start with files it could
// not serve with.
func NewCertStore(files TLSFiles, now func() time.Time) (*CertStore, error) {
	s := &CertStore{files: files, now: now}
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cfg)
	return s, nil
}

// Reload reads the files again and, if they make a configuration the
// daemon can serve with, puts it in force for the next handshakes.
// Otherwise the configuration in force stays, and the error says why.
func (s *CertStore) Reload() (*x509.Certificate, error) {
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cfg)
	return cfg.Certificates[0].Leaf, nil
}

// Current returns the leaf certificate in force.
func (s *CertStore) Current() *x509.Certificate {
	return s.cur.Load().Certificates[0].Leaf
}

// ClientConfig is the configuration the daemon calls others with: the
// certificate in force as its client certificate, and the cluster CA as
// the root the peer's certificate must chain to.
func (s *CertStore) ClientConfig() *tls.Config {
	cur := s.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: cur.Certificates,
		RootCAs:      cur.ClientCAs,
	}
}

// ListenerConfig is the configuration of the TLS listener: it hands each
// handshake the configuration in force.
func (s *CertStore) ListenerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// load builds a server configuration from the files, refusing a key that
// does not match its certificate, a certificate that is not valid now or
// not made for serving, and a CA file without a certificate.
func (s *CertStore) load() (*tls.Config, error) {
	if err := CheckKeyMode(s.files.Key); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return nil, fmt.Errorf("loading --cert %s and --key %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf := pair.Leaf // filled in by LoadX509KeyPair since Go 1.23
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("--cert %s is valid from %s to %s, not now (%s)", s.files.Cert,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("--cert %s is not a server certificate (no server auth key usage): issue one with %s", s.files.Cert, s.files.IssueHint)
	}
	role, err := rpc.RoleOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("--cert %s: %w: issue one with %s", s.files.Cert, err, s.files.IssueHint)
	}
	if role != s.files.Role {
		return nil, fmt.Errorf("--cert %s is a %s certificate; this daemon serves with a %s certificate: issue one with %s", s.files.Cert, role, s.files.Role, s.files.IssueHint)
	}
	caPEM, err := os.ReadFile(s.files.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("reading --client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--client-ca %s holds no PEM certificate", s.files.ClientCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// A resumed session skips the verification of the client's
		// chain, which would let a certificate of a CA rotated out go on
		// working. Clients keep their connections open, so full
		// handshakes are rare anyway.
		SessionTicketsDisabled: true,
	}, nil
}

// CheckKeyMode refuses a private key that others than its owner and group
// may read or write: whoever reads it can serve as this daemon. A key the
// group may read stays allowed (a group of its own, such as ssl-cert).
func CheckKeyMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 || perm&0o020 != 0 {
		return fmt.Errorf("--key %s has mode %v: others may read or write it, or its group may write it; run chmod 600 %s (or chmod 640 to keep it readable by its group)",
			path, perm, path)
	}
	return nil
}

// CertAttrs are the log attributes that identify a certificate.
func CertAttrs(c *x509.Certificate) []any {
	return []any{"subject", c.Subject.CommonName, "serial", fmt.Sprintf("%x", c.SerialNumber), "not_after", c.NotAfter.UTC().Format(time.RFC3339)}
}
