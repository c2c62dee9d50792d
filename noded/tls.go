package noded

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

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
		a.log.Warn("refused a request", append([]any{"path", path, "remote", ctx.RemoteAddr().String(), "err", err}, service.CertAttrs(leaf)...)...)
	}
	return err
}
