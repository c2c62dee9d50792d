// Package ca is the cluster certificate authority: Init makes the CA
// (ca.crt, ca.key) in a directory, Issue signs the certificate of a node,
// a master or an observer with it. Every certificate carries its role as
// the URI name noderpc:role:ROLE (doc/security.md), which noded reads to
// decide who may call what.
//
// The package only writes files; the noderpc certs command and the test
// harness are its callers. Keys are ECDSA P-256, written with mode 0600,
// and every file is replaced atomically and durably, so that a reader (or
// a node after a power cut) never sees half of one.
package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
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

// Validity defaults of Init and Issue, in days. A leaf's year makes
// rotation a routine the operator practises; the CA's ten years keep it
// out of the way.
const (
	DefaultCADays   = 3650
	DefaultCertDays = 365
)

// clockSkew backdates a certificate that starts now, so that a node whose
// clock is a little behind the issuer's accepts a certificate made just now.
const clockSkew = 5 * time.Minute

// Errors of Init and Issue, matched with errors.Is.
var (
	// ErrExists: a key or certificate would be overwritten without Force.
	ErrExists = errors.New("file exists")
	// ErrInvalid: the request itself is wrong (a bad name, role or
	// validity); nothing was read or written.
	ErrInvalid = errors.New("invalid certificate request")
)

// invalidError is a request that is wrong. Its message is all the caller
// needs to fix it; it matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

// InitOptions are the choices of Init.
type InitOptions struct {
	// NotBefore is when the CA starts to be valid. Zero means now, less
	// five minutes of clock skew; a time given is taken as it is.
	NotBefore time.Time
	// Days the CA is valid for from NotBefore (without the skew); zero
	// means DefaultCADays.
	Days int
	// Force overwrites an existing CA; without it Init fails with
	// ErrExists.
	Force bool
}

// Init creates the cluster CA in dir (made 0700 if missing): dir/ca.crt
// and dir/ca.key. It returns the files written, certificate first. Keep
// ca.key off the nodes: whoever holds it can mint a master.
func Init(dir string, o InitOptions) (files []string, err error) {
	v, err := validityOf(o.NotBefore, o.Days, DefaultCADays)
	if err != nil {
		return nil, err
	}
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := refuseExisting(o.Force, keyPath, crtPath); err != nil {
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
		NotBefore:             v.notBefore,
		NotAfter:              v.notAfter,
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
	if err := writePair(dir, keyPath, key, crtPath, der); err != nil {
		return nil, err
	}
	return []string{crtPath, keyPath}, nil
}

// IssueRequest is the certificate Issue is asked for.
type IssueRequest struct {
	// Name is the certificate's common name and the base of its files:
	// a host name, an IP address or a word of letters, digits, '.', '_',
	// ':' and '-', not starting with '.' and not "ca".
	Name string
	// Role is what the holder may do: a node certificate serves noded
	// and says hello to masterd, a master one serves masterd and calls
	// nodes (both server and client auth); an observer one only calls
	// (client auth).
	Role rpc.Role
	// SANs are further DNS names or IP addresses of the certificate. A
	// node's or master's Name, 127.0.0.1 and ::1 are always among its
	// names.
	SANs []string
	// NotBefore is when the certificate starts to be valid. Zero means
	// now, less five minutes of clock skew; a time given is taken as it is.
	NotBefore time.Time
	// Days the certificate is valid for from NotBefore (without the
	// skew); zero means DefaultCertDays.
	Days int
	// Force overwrites an existing certificate and key; without it Issue
	// fails with ErrExists.
	Force bool
}

// certName is a Name that is also a safe file name: no directory, no
// leading dot, no room for path tricks.
var certName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._:-]*$`)

// Issue writes dir/NAME.crt and dir/NAME.key, signed by the CA that Init
// made in dir, and returns the files written, certificate first.
func Issue(dir string, r IssueRequest) (files []string, err error) {
	if !certName.MatchString(r.Name) || r.Name == "ca" {
		return nil, invalidf("NAME %q must be a host name, an IP address or a word of letters, digits, '.', '_', ':' and '-' (and not \"ca\")", r.Name)
	}
	if !r.Role.Known() {
		return nil, invalidf("unknown role %q: want %s, %s or %s", r.Role, rpc.RoleNode, rpc.RoleMaster, rpc.RoleObserver)
	}
	v, err := validityOf(r.NotBefore, r.Days, DefaultCertDays)
	if err != nil {
		return nil, err
	}
	ca, caKey, err := load(dir)
	if err != nil {
		return nil, err
	}
	crtPath, keyPath := filepath.Join(dir, r.Name+".crt"), filepath.Join(dir, r.Name+".key")
	if err := refuseExisting(r.Force, keyPath, crtPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the key: %w", err)
	}
	tmpl, err := leafTemplate(r, v)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	if err := writePair(dir, keyPath, key, crtPath, der); err != nil {
		return nil, err
	}
	return []string{crtPath, keyPath}, nil
}

// leafTemplate is the certificate r asks for, valid over v.
func leafTemplate(r IssueRequest, v validity) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: r.Name, Organization: []string{"noderpc"}, OrganizationalUnit: []string{string(r.Role)}},
		NotBefore:    v.notBefore,
		NotAfter:     v.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{r.Role.URI()},
	}
	sans := r.SANs
	switch r.Role {
	case rpc.RoleNode, rpc.RoleMaster:
		// A node serves noded and says hello to masterd with the same
		// certificate; a master serves masterd and calls nodes with it.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		// Either is called by its name, and by its loopback address,
		// IPv4 or IPv6 (a daemon may listen on [::1]), from its own host.
		sans = append([]string{r.Name, "127.0.0.1", "::1"}, sans...)
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.ContainsFunc(tmpl.DNSNames, func(have string) bool { return strings.EqualFold(have, s) }) {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	return tmpl, nil
}

// validity is when a certificate is valid.
type validity struct{ notBefore, notAfter time.Time }

// validityOf reads NotBefore and Days: a zero start is now, backdated by
// the clock skew (the days count from now); zero days are defaultDays.
func validityOf(start time.Time, days, defaultDays int) (validity, error) {
	switch {
	case days == 0:
		days = defaultDays
	case days < 0:
		return validity{}, invalidf("days must be > 0, got %d", days)
	}
	from := start
	if start.IsZero() {
		start = time.Now()
		from = start.Add(-clockSkew)
	}
	return validity{notBefore: from, notAfter: start.Add(time.Duration(days) * 24 * time.Hour)}, nil
}

func newSerial() (*big.Int, error) {
	// 128 random bits: serials must be unique per CA, and unpredictable.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return n, nil
}
