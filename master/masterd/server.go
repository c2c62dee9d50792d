package masterd

import (
	"bytes"
	"crypto/x509"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// api serves masterd's procedures (rpc/membership.go) over HTTP.
type api struct {
	// role is what masterd is now: the active master serves with its
	// registry, a standby answers not_active. A single master (no
	// --etcd) is always active.
	role atomic.Pointer[role]
	// self is masterd's own URL, which a standby never names as the
	// active master.
	self string
	log  *slog.Logger
	// tls is true when masterd serves HTTPS: every request then carries a
	// verified client certificate whose role (and, for a node, name) is
	// checked.
	tls bool
}

// role is one state of masterd: active with ms, or a standby (ms nil)
// that knows the active master's URL, leader, "" while it knows none.
type role struct {
	ms     *members
	leader string
	// holds, when set, reports whether the active master still holds
	// its etcd lease (leaseGuard.holds); nil for a single master.
	holds func() bool
}

// setActive makes masterd the active master of ms; holds, if not nil,
// is asked before every answer given as the active master.
func (a *api) setActive(ms *members, holds func() bool) {
	a.role.Store(&role{ms: ms, holds: holds})
}

// setStandby makes masterd a standby naming leader.
func (a *api) setStandby(leader string) { a.role.Store(&role{leader: leader}) }

// members is the registry of the active master, nil on a standby.
func (a *api) members() *members {
	if r := a.role.Load(); r != nil {
		return r.ms
	}
	return nil
}

// procedure is one of masterd's procedures: how it is called, who may
// call it, and how large its body may be.
type procedure struct {
	method string
	roles  []rpc.Role
	// maxBody bounds the body, read only once the head is admitted.
	maxBody int
	serve   func(a *api, ms *members, ctx *fasthttp.RequestCtx, body []byte) error
}

// Body bounds. A hello carries the node's functions and calls, up to
// the thousands; every other body is names and numbers.
const (
	maxHelloBody  = 8 << 20
	maxConfigBody = 1 << 20
	smallBody     = 64 << 10
)

var (
	nodeRoles   = []rpc.Role{rpc.RoleNode}
	readerRoles = []rpc.Role{rpc.RoleMaster, rpc.RoleObserver}
	masterRoles = []rpc.Role{rpc.RoleMaster}
)

// procedures are what masterd serves, by path.
var procedures = map[string]procedure{
	rpc.PathHello:     {fasthttp.MethodPut, nodeRoles, maxHelloBody, (*api).hello},
	rpc.PathRenew:     {fasthttp.MethodPut, nodeRoles, smallBody, (*api).renew},
	rpc.PathLeave:     {fasthttp.MethodPut, nodeRoles, smallBody, (*api).leave},
	rpc.PathListNodes: {fasthttp.MethodGet, readerRoles, 0, (*api).listNodes},
	rpc.PathGetNode:   {fasthttp.MethodPut, readerRoles, smallBody, (*api).getNode},
	rpc.PathGetConfig: {fasthttp.MethodPut, readerRoles, smallBody, (*api).getConfig},
	rpc.PathSetConfig: {fasthttp.MethodPut, masterRoles, maxConfigBody, (*api).setConfig},
}

// framingRefused marks, from headerReceived to handle, a request refused
// for its body framing (service.FramingError). It is masterd's own: one
// a client sends is dropped.
const framingRefused = "X-Masterd-Refused"

// headerReceived sets the body bound of a request from its head, before
// fasthttp reads any of the body: a body over it is refused unread, and
// so is one framed in a way two readers could read differently.
func (a *api) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(framingRefused)
	if service.FramingError(h) != nil {
		// Read none of the body: handle refuses the request and closes
		// the connection, so the body is never taken for a request.
		h.Set(framingRefused, "1")
		h.SetContentLength(0)
		return fasthttp.RequestConfig{}
	}
	path, _, _ := bytes.Cut(h.RequestURI(), []byte("?"))
	limit := smallBody
	if p, ok := procedures[string(path)]; ok && p.maxBody > 0 {
		limit = p.maxBody
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: limit}
}

// handle routes one request, and stamps every answer, errors included,
// with the group version.
func (a *api) handle(ctx *fasthttp.RequestCtx) {
	defer a.stamp(ctx)
	defer service.RecoverPanic(ctx, a.log, "masterd")
	path := string(ctx.Path())
	p, ok := procedures[path]
	if len(ctx.Request.Header.Peek(framingRefused)) > 0 {
		ctx.SetConnectionClose()
		a.fail(ctx, service.FramingError(&ctx.Request.Header))
		return
	}
	switch {
	case !ok:
		a.fail(ctx, rpc.Errorf(rpc.KindBadRequest, "no procedure %q; masterd serves %s", path, strings.Join(slices.Sorted(maps.Keys(procedures)), ", ")))
		return
	case string(ctx.Method()) != p.method:
		a.fail(ctx, rpc.Errorf(rpc.KindBadRequest, "%s %s: this procedure takes %s", ctx.Method(), path, p.method))
		return
	}
	if err := a.authorize(ctx, path, p.roles); err != nil {
		a.fail(ctx, err)
		return
	}
	r := a.role.Load()
	if !r.active() {
		a.fail(ctx, errNotActive)
		return
	}
	body := ctx.Request.Body()
	if p.method == fasthttp.MethodGet && len(body) > 0 {
		a.fail(ctx, rpc.Errorf(rpc.KindBadRequest, "GET %s takes no body", path))
		return
	}
	if err := p.serve(a, r.ms, ctx, body); err != nil {
		a.fail(ctx, err)
		return
	}
	// A held renewal ends long after it began, and a frozen masterd
	// wakes with answers ready: none leaves as the active master's once
	// its lease may have lapsed or another term began.
	if now := a.role.Load(); now != r || !r.active() {
		ctx.Response.Reset()
		a.fail(ctx, errNotActive)
	}
}

// active reports whether r is the role of an active master that still
// holds its lease.
func (r *role) active() bool {
	return r != nil && r.ms != nil && (r.holds == nil || r.holds())
}

// stamp sets X-Group-Version, unless the answer set it already (a
// session's, which must match its body). A standby has no group
// version: its answers carry none.
func (a *api) stamp(ctx *fasthttp.RequestCtx) {
	if len(ctx.Response.Header.Peek(rpc.HeaderGroupVersion)) != 0 {
		return
	}
	if r := a.role.Load(); r.active() {
		ctx.Response.Header.Set(rpc.HeaderGroupVersion, strconv.FormatUint(r.ms.groupVersion(), 10))
	}
}

// groupVersionHeader is the header line of X-Group-Version of a refusal
// before any request, "" on a standby.
func (a *api) groupVersionHeader() string {
	if ms := a.members(); ms != nil {
		return fmt.Sprintf("%s: %d\r\n", rpc.HeaderGroupVersion, ms.groupVersion())
	}
	return ""
}

// authorize refuses a request whose certificate's role may not call
// path. Plain HTTP (--insecure, loopback only) is not checked.
func (a *api) authorize(ctx *fasthttp.RequestCtx, path string, roles []rpc.Role) error {
	if !a.tls {
		return nil
	}
	leaf, err := peerCert(ctx)
	if err != nil {
		return err
	}
	role, err := rpc.RoleOf(leaf)
	if err == nil && !slices.Contains(roles, role) {
		err = rpc.Errorf(rpc.KindForbidden, "certificate %q has role %s, which may not call %s (roles allowed: %v)", leaf.Subject.CommonName, role, path, roles)
	}
	if err != nil {
		a.log.Warn("refused a request", "path", path, "remote", ctx.RemoteAddr().String(), "subject", leaf.Subject.CommonName, "err", err)
	}
	return err
}

// errNoClientCert is a TLS connection without a verified client
// certificate, which the handshake should already have refused.
var errNoClientCert = rpc.Errorf(rpc.KindForbidden, "no verified client certificate")

func peerCert(ctx *fasthttp.RequestCtx) (leaf *x509.Certificate, err error) {
	state := ctx.TLSConnectionState()
	if state == nil || len(state.VerifiedChains) == 0 {
		return nil, errNoClientCert
	}
	return state.VerifiedChains[0][0], nil
}

// checkNode refuses a node procedure for node unless the certificate it
// came with names that node: a node speaks for itself only.
func (a *api) checkNode(ctx *fasthttp.RequestCtx, node string) error {
	if !a.tls {
		return nil
	}
	leaf, err := peerCert(ctx)
	if err != nil {
		return err
	}
	if leaf.Subject.CommonName != node {
		err := rpc.Errorf(rpc.KindForbidden, "the certificate is node %q's and the request speaks for node %q: a node may only speak for itself", leaf.Subject.CommonName, node)
		a.log.Warn("refused a node speaking for another", "path", string(ctx.Path()), "remote", ctx.RemoteAddr().String(),
			"certificate", leaf.Subject.CommonName, "node", node)
		return err
	}
	return nil
}

func (a *api) hello(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.HelloRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if err := a.checkNode(ctx, req.Node); err != nil {
		return err
	}
	if err := checkScheme(req.URL, a.tls); err != nil {
		return err
	}
	if cut := boundReported(&req); cut.any() {
		a.log.Warn("a hello reports more of the node's functions and calls than masterd keeps: the rest is left out of its record",
			append([]any{"node", req.Node, "functions_kept", len(req.Functions), "calls_kept", len(req.Calls)}, cut.logAttrs()...)...)
	}
	s, err := ms.hello(&req)
	if err != nil {
		return err
	}
	return a.replySession(ctx, s)
}

// checkScheme refuses a node URL that masters could not call: when
// masterd serves TLS every master calls nodes over mutual TLS, so a node
// at an http:// URL would be listed, and checked, yet never called by
// any master. Plain http:// is for a group run with --insecure. raw has
// passed rpc's checks of a hello's URL.
func checkScheme(raw string, tls bool) error {
	if !tls {
		return nil
	}
	if u, err := url.Parse(raw); err == nil && u.Scheme == "https" {
		return nil
	}
	return rpc.Errorf(rpc.KindBadRequest, "url %q: masterd serves TLS and masters call nodes over mutual TLS; want https://HOST:PORT (http:// is for a group run with --insecure)", raw)
}

func (a *api) renew(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.RenewRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if err := a.checkNode(ctx, req.Node); err != nil {
		return err
	}
	s, err := ms.renew(&req)
	if err != nil {
		return err
	}
	return a.replySession(ctx, s)
}

func (a *api) leave(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.LeaveRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if err := a.checkNode(ctx, req.Node); err != nil {
		return err
	}
	if err := ms.leave(&req); err != nil {
		return err
	}
	// An empty object, so that a client decodes every answer alike.
	return reply(ctx, struct{}{})
}

func (a *api) listNodes(ms *members, ctx *fasthttp.RequestCtx, _ []byte) error {
	l := ms.list()
	ctx.Response.Header.Set(rpc.HeaderGroupVersion, strconv.FormatUint(l.GroupVersion, 10))
	return reply(ctx, l)
}

func (a *api) getNode(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.NodeRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Node == "" {
		return rpc.Errorf(rpc.KindBadRequest, "node is required")
	}
	n, err := ms.get(req.Node)
	if err != nil {
		return err
	}
	return reply(ctx, n)
}

func (a *api) getConfig(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.NodeRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	return reply(ctx, ms.config(req.Node))
}

func (a *api) setConfig(ms *members, ctx *fasthttp.RequestCtx, body []byte) error {
	var req rpc.SetConfigRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if err := checkConfigText(&req); err != nil {
		return err
	}
	r, err := ms.setConfig(&req)
	if err != nil {
		return err
	}
	return reply(ctx, r)
}

// checkConfigText holds a configuration change to the rule of a hello's
// strings (rpc.CheckText): noderpc config get prints keys and values as
// they are, and masterd logs the keys. Each value is compacted first, so
// that the whitespace JSON allows between tokens (newlines included)
// neither breaks the printed line nor is refused; what CheckText then
// finds is a raw character inside a JSON string, which the string could
// carry escaped instead.
func checkConfigText(req *rpc.SetConfigRequest) error {
	for _, k := range req.Delete {
		if err := rpc.CheckText(fmt.Sprintf("deleted key %.64q", k), k); err != nil {
			return err
		}
	}
	for k, v := range req.Set {
		if err := rpc.CheckText(fmt.Sprintf("key %.64q", k), k); err != nil {
			return err
		}
		var b bytes.Buffer
		if err := stdjson.Compact(&b, v); err != nil {
			// rpc.Decode took it for JSON; so does any value it decoded.
			return rpc.Errorf(rpc.KindBadRequest, "value of key %.64q: %v", k, err)
		}
		if err := rpc.CheckText(fmt.Sprintf("value of key %.64q", k), b.String()); err != nil {
			return err
		}
		req.Set[k] = b.Bytes()
	}
	return nil
}

// replySession answers s with its group version in the header.
func (a *api) replySession(ctx *fasthttp.RequestCtx, s rpc.Session) error {
	ctx.Response.Header.Set(rpc.HeaderGroupVersion, strconv.FormatUint(s.GroupVersion, 10))
	return reply(ctx, s)
}

// decode decodes a request body strictly and validates its values.
func decode(body []byte, v interface{ Validate() error }) error {
	if err := rpc.Decode(body, v); err != nil {
		return err
	}
	return v.Validate()
}

func reply(ctx *fasthttp.RequestCtx, v any) error {
	body, err := rpc.Marshal(v)
	if err != nil {
		return rpc.Errorf(rpc.KindInternal, "encoding the answer: %v", err)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// fail answers with the error's kind and status. An error that is not an
// *rpc.Error is a bug below and answers internal, logged.
func (a *api) fail(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, errNotActive) {
		a.notActive(ctx)
		return
	}
	var e *rpc.Error
	if !errors.As(err, &e) {
		a.log.Error("unexpected error serving a request", "path", string(ctx.Path()), "err", err)
		e = rpc.Errorf(rpc.KindInternal, "%v", err)
	}
	service.WriteError(ctx, e)
}

// notActive answers not_active, naming the active master when this
// standby knows one (never itself: a campaign of its own that outlived
// its lease names no master a node could follow).
func (a *api) notActive(ctx *fasthttp.RequestCtx) {
	var leader string
	if r := a.role.Load(); r != nil {
		leader = r.leader
	}
	if leader == "" || leader == a.self {
		service.WriteError(ctx, rpc.Errorf(rpc.KindNotActive, "no master is active; an election is under way"))
		return
	}
	ctx.Response.Header.Set(rpc.HeaderActiveMaster, leader)
	service.WriteError(ctx, rpc.Errorf(rpc.KindNotActive, "not active; the active master is %s", leader))
}

// serverError answers requests fasthttp refused before any handler ran
// (a head that is malformed, too large or too slow, a body over its
// bound) in the same JSON shape, and closes the connection.
func (a *api) serverError(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	defer a.stamp(ctx)
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		service.WriteError(ctx, rpc.Errorf(rpc.KindTooLarge, "the request body is larger than masterd takes for %s", ctx.Path()))
	case errors.As(err, &small):
		service.WriteError(ctx, rpc.Errorf(rpc.KindTooLarge, "the request head is larger than the %d bytes masterd reads", headBufferSize))
	case errors.As(err, &timeout) && timeout.Timeout():
		service.WriteError(ctx, service.LateRequestError(&ctx.Request.Header, "the request did not arrive within --head-timeout, its body included"))
	default:
		service.WriteError(ctx, rpc.Errorf(rpc.KindBadRequest, "malformed HTTP request: %s", rpc.Clip(err.Error(), 200)))
	}
}

// headBufferSize bounds a request's line and headers.
const headBufferSize = 16 << 10

// newServer returns the fasthttp server for a. Its idle timeout is well
// above the longest gap between a node's renewals (a third of the
// longest session timeout), so a session's connection is kept; held
// renewals run in the handler, which no read or write timeout covers.
func newServer(a *api, cfg *Config, log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:        a.handle,
		ErrorHandler:   a.serverError,
		HeaderReceived: a.headerReceived,
		Name:           "masterd",
		ReadTimeout:    cfg.HeadTimeout,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    cfg.MaxSessionTimeout + 30*time.Second,
		ReadBufferSize: headBufferSize,
		// Read and write buffers go back to their pools while a renewal
		// is held and while a connection waits for the next one: with
		// 10,000 sessions they would otherwise be most of masterd's
		// memory (doc/membership.md, Scale).
		ReduceMemoryUsage: true,
		Concurrency:       cfg.MaxConns,
		// Every node of the fleet may sit behind one address (a NAT, or
		// the load tool on loopback): no bound per IP.
		MaxConnsPerIP: 0,
		// fasthttp would read a multipart body in full (to memory, and
		// past 16 MiB to temporary files) before the handler, its limit
		// and its authorisation: no procedure takes one.
		DisablePreParseMultipartForm: true,
		Logger:                       service.SlogPrinter{Log: log},
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
	}
}
