package noded

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// tlsFiles names the files of noded's TLS identity, as given by --cert,
// --key and --client-ca. They are read at start and again on SIGHUP.
type tlsFiles struct {
	cert, key, clientCA string
}

// certStore holds the TLS configuration noded serves with and swaps it on
// reload. Every new handshake takes the configuration current at that
// moment; connections already open keep the one they were made with, so
// calls in flight go on across a rotation.
type certStore struct {
	files tlsFiles
	// now is the clock certificates are checked against when loaded.
	now func() time.Time
	cur atomic.Pointer[tls.Config]
}

// newCertStore loads files; noded does not start with files it could not
// serve with.
func newCertStore(files tlsFiles, now func() time.Time) (*certStore, error) {
	s := &certStore{files: files, now: now}
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cfg)
	return s, nil
}

// reload reads the files again and, if they make a configuration noded can
// serve with, puts it in force for the next handshakes. Otherwise the
// configuration in force stays, and the error says why.
func (s *certStore) reload() (*x509.Certificate, error) {
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cfg)
	return cfg.Certificates[0].Leaf, nil
}

// current returns the leaf certificate in force.
func (s *certStore) current() *x509.Certificate {
	return s.cur.Load().Certificates[0].Leaf
}

// listenerConfig is the configuration of the TLS listener: it hands each
// handshake the configuration in force.
func (s *certStore) listenerConfig() *tls.Config {
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
func (s *certStore) load() (*tls.Config, error) {
	if err := checkKeyMode(s.files.key); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(s.files.cert, s.files.key)
	if err != nil {
		return nil, fmt.Errorf("loading --cert %s and --key %s: %w", s.files.cert, s.files.key, err)
	}
	leaf := pair.Leaf // filled in by LoadX509KeyPair since Go 1.23
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("--cert %s is valid from %s to %s, not now (%s)", s.files.cert,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("--cert %s is not a server certificate (no server auth key usage): issue one with noderpc certs issue --node NAME", s.files.cert)
	}
	caPEM, err := os.ReadFile(s.files.clientCA)
	if err != nil {
		return nil, fmt.Errorf("reading --client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--client-ca %s holds no PEM certificate", s.files.clientCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// A resumed session skips the verification of the client's
		// chain, which would let a certificate of a CA rotated out go on
		// working. Masters keep their connections open, so full
		// handshakes are rare anyway.
		SessionTicketsDisabled: true,
	}, nil
}

// checkKeyMode refuses a private key that others than its owner and group
// may read or write: whoever reads it can serve as this node. A key the
// group may read stays allowed (a group of its own, such as ssl-cert).
func checkKeyMode(path string) error {
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

// reloadCerts reloads the certificates at each receive from reload, until
// stop is closed. A reload that fails is logged and changes nothing.
func (d *Daemon) reloadCerts(reload <-chan struct{}, stop <-chan struct{}) {
	for {
		select {
		case <-reload:
			if d.certs == nil {
				d.log.Info("SIGHUP: nothing to reload, noded serves plain HTTP (--insecure)")
				continue
			}
			leaf, err := d.certs.reload()
			if err != nil {
				d.log.Error("SIGHUP: certificates not reloaded, the previous ones stay in use", "err", err)
				continue
			}
			d.log.Info("SIGHUP: certificates reloaded; new connections use them", certAttrs(leaf)...)
		case <-stop:
			return
		}
	}
}

// certAttrs are the log attributes that identify a certificate.
func certAttrs(c *x509.Certificate) []any {
	return []any{"subject", c.Subject.CommonName, "serial", fmt.Sprintf("%x", c.SerialNumber), "not_after", c.NotAfter.UTC().Format(time.RFC3339)}
}

// mayCall is the table of doc/security.md: a master may call every
// procedure, an observer only those that read; any other role nothing.
func mayCall(role rpc.Role, path string) bool {
	p, ok := procedures[path]
	switch role {
	case rpc.RoleMaster:
		return ok
	case rpc.RoleObserver:
		return ok && p.read
	}
	return false
}

// errNoClientCert is a TLS connection without a verified client
// certificate, which the handshake should already have refused.
var errNoClientCert = errors.New("no verified client certificate")

// authorize refuses the request with kind forbidden unless the role of
// the client certificate may call the procedure at path. Plain HTTP
// (--insecure, loopback only) has no certificate and is not checked:
// whoever can reach a loopback port is already on the node.
func (a *api) authorize(ctx *fasthttp.RequestCtx, path string) error {
	if !a.tls {
		return nil
	}
	state := ctx.TLSConnectionState()
	if state == nil || len(state.VerifiedChains) == 0 {
		a.log.Error("refusing a request", "path", path, "err", errNoClientCert)
		return rpc.Errorf(rpc.KindForbidden, "%v", errNoClientCert)
	}
	leaf := state.VerifiedChains[0][0]
	role, err := rpc.RoleOf(leaf)
	if err == nil && !mayCall(role, path) {
		err = rpc.Errorf(rpc.KindForbidden, "certificate %q has role %s, which may not call %s (an observer may call only %s, %s, %s, %s and %s)",
			leaf.Subject.CommonName, role, path, rpc.PathVersion, rpc.PathListFunctions, rpc.PathListCalls, rpc.PathWaitForFunction, PathMetrics)
	}
	if err != nil {
		a.log.Warn("refused a request", append([]any{"path", path, "remote", ctx.RemoteAddr().String(), "err", err}, certAttrs(leaf)...)...)
	}
	return err
}
