package rpc

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// Role is what the holder of a cluster certificate may do. noded reads it
// from the client certificate of every connection; the certificate
// tooling writes it when it issues one.
//
// The rule: a certificate's role is given by exactly one URI subject
// alternative name of the form "noderpc:role:ROLE". A certificate with no
// such name, with two, or with a role this release does not know has no
// role, and noded refuses every procedure to it.
type Role string

// The roles of a cluster.
const (
	// RoleMaster may call every procedure.
	RoleMaster Role = "master"
	// RoleObserver may only read: Version, ListFunctions, ListCalls,
	// WaitForFunction (which has no side effect) and the metrics.
	RoleObserver Role = "observer"
	// RoleNode is a node daemon's serving certificate. It may call
	// nothing: a node that is taken over must not be able to command the
	// others.
	RoleNode Role = "node"
)

// RoleURIScheme is the scheme of the URI subject alternative name that
// carries a certificate's role: "noderpc:role:master".
const RoleURIScheme = "noderpc"

const rolePrefix = "role:"

// URI returns the subject alternative name that gives a certificate role r.
func (r Role) URI() *url.URL {
	return &url.URL{Scheme: RoleURIScheme, Opaque: rolePrefix + string(r)}
}

// Known reports whether r is one of the roles of this release.
func (r Role) Known() bool {
	switch r {
	case RoleMaster, RoleObserver, RoleNode:
		return true
	}
	return false
}

// RoleOf returns the role cert carries, or a forbidden error saying why it
// carries none.
func RoleOf(cert *x509.Certificate) (Role, error) {
	var roles []Role
	for _, u := range cert.URIs {
		if u.Scheme != RoleURIScheme || !strings.HasPrefix(u.Opaque, rolePrefix) {
			continue
		}
		roles = append(roles, Role(strings.TrimPrefix(u.Opaque, rolePrefix)))
	}
	who := fmt.Sprintf("certificate %q (serial %x)", cert.Subject.CommonName, cert.SerialNumber)
	switch {
	case len(roles) == 0:
		return "", Errorf(KindForbidden, "%s carries no role (no %s:%sROLE name); issue it with noderpc certs issue", who, RoleURIScheme, rolePrefix)
	case len(roles) > 1:
		return "", Errorf(KindForbidden, "%s carries %d roles, want exactly one", who, len(roles))
	case !roles[0].Known():
		return "", Errorf(KindForbidden, "%s carries the unknown role %q", who, roles[0])
	}
	return roles[0], nil
}
