package tools

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// Validity defaults of certs init and certs issue, in days. A leaf's year
// makes rotation a routine the operator practises; the CA's ten years
// keep it out of the way.
const (
	DefaultCADays   = 3650
	DefaultCertDays = 365
)

// clockSkew backdates a certificate's start, so that a node whose clock
// is a little behind the issuer's accepts a certificate made just now.
const clockSkew = 5 * time.Minute

// ErrExists is matched (errors.Is) when certs init or certs issue would
// overwrite a key or certificate without --force.
var ErrExists = errors.New("file exists")

var certsCommand = &command{
	name:    "certs",
	args:    "init [--force] [--days N] DIR | issue --dir DIR --node|--master|--observer NAME [flags]",
	summary: "make the cluster CA and the certificates of nodes, masters and observers",
	local:   true,
	about: `
certs init DIR creates the cluster CA: DIR/ca.crt and DIR/ca.key (ECDSA
P-256). Keep ca.key off the nodes: whoever holds it can mint a master.

certs issue --dir DIR --node NAME writes DIR/NAME.crt and DIR/NAME.key,
signed by DIR/ca.key: a node certificate serves noded (server auth; its
names are NAME and 127.0.0.1, and every --san). --master NAME issues a
client certificate that may call every procedure; --observer NAME one
that may only read (Version, ListFunctions, WaitForFunction, /metrics).
The role is written as the URI name noderpc:role:ROLE (doc/security.md).

Keys are written with mode 0600 and every file through a rename, so a
reader never sees half of one. Nothing existing is overwritten without
--force.

Examples:
  noderpc certs init /etc/noderpc/ca
  noderpc certs issue --dir /etc/noderpc/ca --node node1.example.com --san 10.0.0.1
  noderpc certs issue --dir /etc/noderpc/ca --master master1
  noderpc certs issue --dir /etc/noderpc/ca --observer monitoring --days 90
  noderpc certs issue --dir /etc/noderpc/ca --node node1.example.com --san 10.0.0.1 --force   # rotate
`,
	setup: func(fs *flag.FlagSet) runFunc { return (*app).certs },
}

// certs runs certs init or certs issue; each parses its own flags.
func (a *app) certs(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return a.commandUsageError("want init or issue")
	}
	fs := flag.NewFlagSet("noderpc certs "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	force := fs.Bool("force", false, "overwrite existing keys and certificates")
	days := fs.Int("days", DefaultCertDays, "days the certificate is valid for (certs init: default 3650)")
	notBefore := fs.String("not-before", "", "start of validity, RFC 3339 (default: now, less 5 minutes of clock skew)")
	var (
		run func() ([]string, error)
		dir string
		req issueRequest
	)
	switch args[0] {
	case "init":
		run = func() ([]string, error) {
			if fs.NArg() != 1 {
				return nil, usageErr("certs init takes one DIR, got %q", fs.Args())
			}
			if !isSet(fs, "days") {
				*days = DefaultCADays
			}
			nb, err := parseNotBefore(*notBefore)
			if err != nil {
				return nil, err
			}
			return initCA(fs.Arg(0), nb, *days, *force)
		}
	case "issue":
		fs.StringVar(&dir, "dir", "", "`directory` of the CA (ca.crt, ca.key), where the files are written")
		node := fs.String("node", "", "issue a node certificate (server auth) for `NAME`")
		mst := fs.String("master", "", "issue a master certificate (client auth, every procedure) for `NAME`")
		obs := fs.String("observer", "", "issue an observer certificate (client auth, reads only) for `NAME`")
		fs.Func("san", "add a DNS name or IP address to the certificate's names (repeatable)", func(s string) error {
			req.sans = append(req.sans, s)
			return nil
		})
		run = func() ([]string, error) {
			if fs.NArg() != 0 {
				return nil, usageErr("unexpected arguments %q", fs.Args())
			}
			if dir == "" {
				return nil, usageErr("--dir is required")
			}
			n := 0
			for role, name := range map[rpc.Role]string{rpc.RoleNode: *node, rpc.RoleMaster: *mst, rpc.RoleObserver: *obs} {
				if name != "" {
					req.role, req.name = role, name
					n++
				}
			}
			if n != 1 {
				return nil, usageErr("give exactly one of --node, --master and --observer")
			}
			nb, err := parseNotBefore(*notBefore)
			if err != nil {
				return nil, err
			}
			req.valid, req.days, req.force = nb, *days, *force
			return issue(dir, req)
		}
	default:
		return a.commandUsageError("unknown certs command %q: want init or issue", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.cmd.printHelp(a.stdout, fs)
			return ExitOK
		}
		return a.commandUsageError("%v", err)
	}
	if *days <= 0 {
		return a.commandUsageError("--days must be > 0, got %d", *days)
	}
	written, err := run()
	var uerr *usageError
	switch {
	case errors.As(err, &uerr):
		return a.commandUsageError("%v", err)
	case err != nil:
		fmt.Fprintf(a.stderr, "noderpc certs %s: %v\n", args[0], err)
		return ExitFailed
	}
	for _, f := range written {
		fmt.Fprintf(a.stdout, "wrote %s\n", f)
	}
	return ExitOK
}

// usageError is a certs command line that is wrong, as opposed to a
// failure to write the files.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// validity is when a certificate starts, and how long before that it is
// already accepted.
type validity struct {
	start time.Time
	skew  time.Duration
}

func (v validity) notBefore() time.Time { return v.start.Add(-v.skew) }

func (v validity) notAfter(days int) time.Time {
	return v.start.Add(time.Duration(days) * 24 * time.Hour)
}

// parseNotBefore reads --not-before; empty means now, backdated by the
// clock skew. A date given is taken as it is.
func parseNotBefore(s string) (validity, error) {
	if s == "" {
		return validity{start: time.Now(), skew: clockSkew}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return validity{}, usageErr("--not-before %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", s)
	}
	return validity{start: t}, nil
}

// initCA writes a new cluster CA into dir and returns the files written.
func initCA(dir string, valid validity, days int, force bool) ([]string, error) {
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := refuseExisting(force, keyPath, crtPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "noderpc cluster CA", Organization: []string{"noderpc"}},
		NotBefore:             valid.notBefore(),
		NotAfter:              valid.notAfter(days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs leaves only: a leaf cannot be a CA of its own.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writeCert(crtPath, der); err != nil {
		return nil, err
	}
	return []string{crtPath, keyPath}, nil
}

// issueRequest is what certs issue was asked for.
type issueRequest struct {
	name  string
	role  rpc.Role
	sans  []string
	valid validity
	days  int
	force bool
}

// certName is a NAME that is also a safe file name: no directory, no
// leading dot, no room for path tricks.
var certName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._:-]*$`)

// issue writes dir/NAME.crt and dir/NAME.key signed by the CA in dir.
func issue(dir string, req issueRequest) ([]string, error) {
	if !certName.MatchString(req.name) || req.name == "ca" {
		return nil, usageErr("NAME %q must be a host name, an IP address or a word of letters, digits, '.', '_', ':' and '-' (and not \"ca\")", req.name)
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return nil, err
	}
	crtPath, keyPath := filepath.Join(dir, req.name+".crt"), filepath.Join(dir, req.name+".key")
	if err := refuseExisting(req.force, keyPath, crtPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.name, Organization: []string{"noderpc"}, OrganizationalUnit: []string{string(req.role)}},
		NotBefore:    req.valid.notBefore(),
		NotAfter:     req.valid.notAfter(req.days),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{req.role.URI()},
	}
	sans := req.sans
	if req.role == rpc.RoleNode {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		// A node is called by its name, and by 127.0.0.1 from the node
		// itself.
		sans = append([]string{req.name, "127.0.0.1"}, sans...)
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = appendIP(tmpl.IPAddresses, ip)
		} else if !slices.ContainsFunc(tmpl.DNSNames, func(have string) bool { return strings.EqualFold(have, s) }) {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writeCert(crtPath, der); err != nil {
		return nil, err
	}
	return []string{crtPath, keyPath}, nil
}

func appendIP(ips []net.IP, ip net.IP) []net.IP {
	if slices.ContainsFunc(ips, ip.Equal) {
		return ips
	}
	return append(ips, ip)
}

// loadCA reads dir/ca.crt and dir/ca.key.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	crtPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA (make one with noderpc certs init %s): %w", dir, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA key: %w", err)
	}
	cb, _ := pem.Decode(crtPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s: ca.crt or ca.key is not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing ca.crt: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing ca.key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("%s: ca.key is not the key of ca.crt", dir)
	}
	return ca, key, nil
}

// refuseExisting fails with ErrExists if any of paths exists, unless force.
func refuseExisting(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w (pass --force to replace it)", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func newSerial() (*big.Int, error) {
	// 128 random bits: serials must be unique per CA, and unpredictable.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return n, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the key: %w", err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCert(path string, der []byte) error {
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeAtomic writes data to path through a temporary file in the same
// directory, created with mode perm (so a key is never readable by others,
// not even for a moment), synced, then renamed over path.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; a certificate is widened to perm.
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
