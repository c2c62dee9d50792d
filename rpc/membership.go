package rpc

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-json"
)

// Procedure paths served by masterd. A node calls the first three with
// its node certificate; masters, observers and the CLI call the rest.
const (
	// PathHello is PUT: a node joins (or rejoins) and opens a session.
	PathHello = "/Hello"
	// PathRenew is PUT: a node renews its session. The answer is held
	// until the group version or the node's configuration changes, or
	// the request's hold ends, whichever comes first.
	PathRenew = "/Renew"
	// PathLeave is PUT: a node that is stopping closes its session.
	PathLeave = "/Leave"
	// PathListNodes is GET: every node masterd knows, up or down.
	PathListNodes = "/ListNodes"
	// PathGetNode is PUT: one node, with its calls and configuration.
	PathGetNode = "/GetNode"
	// PathGetConfig is PUT: the group-wide or one node's configuration.
	PathGetConfig = "/GetConfig"
	// PathSetConfig is PUT: sets or deletes configuration keys, group-wide
	// or for one node (known or not yet joined).
	PathSetConfig = "/SetConfig"
)

// HeaderGroupVersion is the header every masterd answer carries: the
// membership version, bumped by every join, leave and expiry.
const HeaderGroupVersion = "X-Group-Version"

// HeaderActiveMaster is the header of a not_active answer (421): the URL
// of the active master, absent while no master is active (an election
// is under way). Nodes say hello there and clients ask there, at once.
const HeaderActiveMaster = "X-Active-Master"

// NodeState is whether masterd holds a live session with a node.
type NodeState string

// The node states.
const (
	// NodeUp: the node said hello and its session has not lapsed.
	NodeUp NodeState = "up"
	// NodeDown: the node's session lapsed or it left, or masterd
	// restarted and has not heard from it since.
	NodeDown NodeState = "down"
)

// Config is a configuration: keys to JSON values. Group-wide keys apply
// to every node; a node's own keys override them.
type Config map[string]json.RawMessage

// HelloRequest is the body of PUT /Hello.
type HelloRequest struct {
	// Node is the node's name; it must be the common name of the node
	// certificate the hello is sent with.
	Node string `json:"node"`
	// URL is where masters and clients call the node ("https://host:port",
	// or "http://host:port" for a node run with --insecure).
	URL string `json:"url"`
	// Version is the node's noded release; Protocol its ProtocolVersion.
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	// BootID is new each time noded starts (VersionResponse.BootID). A
	// hello with a new one tells masterd that the calls of the old boot
	// are lost.
	BootID string `json:"boot_id"`
	// Functions are the functions the node offers (as ListFunctions).
	Functions []Function `json:"functions"`
	// Calls are the calls the node holds, running or finished and not
	// released (as ListCalls).
	Calls []CallSummary `json:"calls"`
	// SessionTimeout, when above 0, asks for a longer session timeout
	// than masterd's default, in seconds; masterd caps it at its bound.
	SessionTimeout float64 `json:"session_timeout,omitempty" unit:"seconds"`
}

// Validate reports a bad_request error for a hello no master could take.
// Every string of it that masterd stores is shown as it is by noderpc
// nodes and noderpc node and written to masterd's log. The node's own
// facts (name, URL, boot id, version) must pass CheckText: a control or
// format character would act on the operator's terminal instead of being
// printed. What the node reports of its functions and calls is not
// refused for it but escaped (EscapeReported): a call's request ID is
// its caller's, and a function's name is a file's, so refusing the hello
// would let whoever names either keep the node out of the group.
func (r *HelloRequest) Validate() error {
	if err := CheckNodeName(r.Node); err != nil {
		return err
	}
	if err := checkNodeURL(r.URL); err != nil {
		return err
	}
	if r.BootID == "" {
		return Errorf(KindBadRequest, "boot_id is required")
	}
	for _, f := range []struct{ name, v string }{{"boot_id", r.BootID}, {"version", r.Version}} {
		if len(f.v) > maxFactLen {
			return Errorf(KindBadRequest, "%s of %d bytes: at most %d", f.name, len(f.v), maxFactLen)
		}
		if err := CheckText(f.name, f.v); err != nil {
			return err
		}
	}
	return checkSeconds("session_timeout", r.SessionTimeout)
}

// EscapeReported escapes, in what the hello reports of the node's
// functions and calls, what CheckText refuses (see Validate), so that
// masterd stores and shows it as text.
func (r *HelloRequest) EscapeReported() {
	for i := range r.Functions {
		fn := &r.Functions[i]
		fn.Name, fn.Problem = EscapeText(fn.Name), EscapeText(fn.Problem)
		fn.Kind = FunctionKind(EscapeText(string(fn.Kind)))
	}
	for i := range r.Calls {
		c := &r.Calls[i]
		c.ID, c.FnName, c.RequestID = EscapeText(c.ID), EscapeText(c.FnName), EscapeText(c.RequestID)
		c.State, c.ErrorKind = State(EscapeText(string(c.State))), Kind(EscapeText(string(c.ErrorKind)))
	}
}

// maxFactLen bounds a hello's boot id and version.
const maxFactLen = 255

// MaxNodeNameLen bounds a node name, which masterd keeps as a key of its
// store (bbolt takes at most 32 KB) and writes in every log line about
// the node.
const MaxNodeNameLen = 255

// MaxNodeURLLen bounds the URL of a hello. masterd writes it in its log
// lines about the node and in its store, and lists it in every answer of
// ListNodes: without a bound, a few hellos fill the log and make the list
// larger than a client takes. A host name is at most 253 bytes; the rest
// leaves ample room for an IPv6 literal with a zone.
const MaxNodeURLLen = 2048

// CheckNodeName reports a bad_request error for a name no node may have:
// empty, longer than MaxNodeNameLen bytes, or with a space or a character
// CheckText refuses, which noded's --node-name refuses as well (the name
// is its certificate's common name).
func CheckNodeName(name string) error {
	switch {
	case name == "":
		return Errorf(KindBadRequest, "node is required")
	case len(name) > MaxNodeNameLen:
		return Errorf(KindBadRequest, "node name of %d bytes: at most %d", len(name), MaxNodeNameLen)
	case strings.ContainsFunc(name, unicode.IsSpace):
		return Errorf(KindBadRequest, "node name %q has a space", name)
	}
	return CheckText("node name", name)
}

// checkNodeURL reports a bad_request error for a URL masters and clients
// could not call a node at: the client (master.Cluster.Up) takes
// http(s)://HOST:PORT with nothing after but an optional "/", so masterd
// takes exactly that, and never lists a node its own client refuses. It
// is stricter where the client would take a URL it cannot dial or that
// hides what it names: an empty host, port 0 or above 65535, a user, an
// empty query ("?") or fragment ("#").
func checkNodeURL(raw string) error {
	want := func(why string) error {
		return Errorf(KindBadRequest, "url %q: %s; want http://HOST:PORT or https://HOST:PORT", raw, why)
	}
	switch {
	case raw == "":
		return Errorf(KindBadRequest, "url is required")
	case len(raw) > MaxNodeURLLen:
		// Not quoted: the point is not to echo it.
		return Errorf(KindBadRequest, "url of %d bytes: at most %d", len(raw), MaxNodeURLLen)
	}
	if err := CheckText("url", raw); err != nil {
		return err
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return want("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return want("the scheme is neither http nor https")
	case u.Host == "":
		return want("no host")
	case u.User != nil:
		return want("a user")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#"):
		return want("a path, query or fragment")
	}
	// The host as it is dialled, escapes decoded: the check of the node
	// prints it in the node's problem.
	if err := CheckText("url host", u.Host); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(u.Host)
	switch {
	case err != nil || port == "":
		return want("no port")
	case host == "":
		return want("no host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return want("a port outside 1-65535")
	}
	return nil
}

// Session is the answer of PUT /Hello and PUT /Renew: the node's
// session and what the node should know of the group.
type Session struct {
	// ID names the session in renewals and the leave.
	ID string `json:"session"`
	// Timeout is how many seconds the session lives without a renewal.
	Timeout float64 `json:"session_timeout" unit:"seconds"`
	// RenewWithin is how many seconds a node may let pass between the
	// end of one renewal and the next; well inside Timeout.
	RenewWithin float64 `json:"renew_within" unit:"seconds"`
	// GroupVersion is the membership version.
	GroupVersion uint64 `json:"group_version"`
	// ConfigVersion changes whenever the node's effective configuration
	// does.
	ConfigVersion uint64 `json:"config_version"`
	// Config is the node's effective configuration: the group's keys
	// overridden by the node's own.
	Config Config `json:"config"`
	// Masters are the URLs of every master of the group, so a node learns
	// masters it was not configured with.
	Masters []string `json:"masters"`
}

// RenewRequest is the body of PUT /Renew.
type RenewRequest struct {
	// Node and Session name the session to renew.
	Node    string `json:"node"`
	Session string `json:"session"`
	// GroupVersion and ConfigVersion are what the node knows: masterd
	// answers at once when either differs from its own.
	GroupVersion  uint64 `json:"group_version"`
	ConfigVersion uint64 `json:"config_version"`
	// Hold is how many seconds masterd may hold the renewal before
	// answering; masterd caps it well inside the session timeout.
	Hold float64 `json:"hold" unit:"seconds"`
}

// Validate reports a bad_request error for a malformed renewal.
func (r *RenewRequest) Validate() error {
	switch {
	case r.Node == "":
		return Errorf(KindBadRequest, "node is required")
	case r.Session == "":
		return Errorf(KindBadRequest, "session is required")
	}
	return checkSeconds("hold", r.Hold)
}

// LeaveRequest is the body of PUT /Leave.
type LeaveRequest struct {
	Node    string `json:"node"`
	Session string `json:"session"`
}

// Validate reports a bad_request error for a malformed leave.
func (r *LeaveRequest) Validate() error {
	switch {
	case r.Node == "":
		return Errorf(KindBadRequest, "node is required")
	case r.Session == "":
		return Errorf(KindBadRequest, "session is required")
	}
	return nil
}

// NodeRequest is the body of PUT /GetNode and PUT /GetConfig. An empty
// Node in GetConfig asks for the group-wide configuration.
type NodeRequest struct {
	Node string `json:"node"`
}

// Validate accepts any request: GetNode checks the name itself.
func (r *NodeRequest) Validate() error { return nil }

// NodeCall is a call masterd learned of from a node's hello.
type NodeCall struct {
	CallSummary
	// Lost is set when the node said hello with a new boot id while the
	// call was not finished: the call died with the old boot.
	Lost bool `json:"lost,omitempty"`
}

// Node is what masterd knows of one node.
type Node struct {
	Name  string    `json:"name"`
	State NodeState `json:"state"`
	// URL is where the node is called, as it advertised it.
	URL string `json:"url"`
	// LastContact is when masterd last heard from the node (hello,
	// renewal or leave); zero if never since it was configured.
	LastContact time.Time `json:"last_contact"`
	// Joined is when the node's current (or last) session began.
	Joined   time.Time `json:"joined"`
	BootID   string    `json:"boot_id"`
	Version  string    `json:"version"`
	Protocol int       `json:"protocol"`
	// SessionTimeout is the node's session timeout in seconds.
	SessionTimeout float64    `json:"session_timeout" unit:"seconds"`
	Functions      []Function `json:"functions"`
	// Reachable is set once masterd, after the node's last hello, called
	// the node at URL and found the boot id of that hello; Problem says
	// why not when it is not ("" while the check is under way).
	Reachable bool   `json:"reachable"`
	Problem   string `json:"problem,omitempty"`
	// Calls and Config are filled by GetNode only.
	Calls  []NodeCall `json:"calls,omitempty"`
	Config Config     `json:"config,omitempty"`
}

// ListNodesResponse is the answer of GET /ListNodes.
type ListNodesResponse struct {
	// GroupVersion is the membership version the list was taken at.
	GroupVersion uint64 `json:"group_version"`
	// Nodes are sorted by name.
	Nodes []Node `json:"nodes"`
}

// ConfigResponse is the answer of PUT /GetConfig and PUT /SetConfig.
type ConfigResponse struct {
	// Node is empty for the group-wide configuration.
	Node string `json:"node,omitempty"`
	// Group is the group-wide configuration; Own the node's own keys
	// (empty for the group); Effective is Group overridden by Own.
	Group     Config `json:"group"`
	Own       Config `json:"own,omitempty"`
	Effective Config `json:"effective"`
}

// SetConfigRequest is the body of PUT /SetConfig.
type SetConfigRequest struct {
	// Node is empty to change the group-wide configuration.
	Node string `json:"node,omitempty"`
	// Set are keys to set (or replace); Delete keys to remove.
	Set    Config   `json:"set,omitempty"`
	Delete []string `json:"delete,omitempty"`
}

// Validate reports a bad_request error for a change that changes nothing
// or both sets and deletes a key.
func (r *SetConfigRequest) Validate() error {
	if len(r.Set) == 0 && len(r.Delete) == 0 {
		return Errorf(KindBadRequest, "set or delete is required")
	}
	if r.Node != "" {
		if err := CheckNodeName(r.Node); err != nil {
			return err
		}
	}
	for _, k := range r.Delete {
		if _, ok := r.Set[k]; ok {
			return Errorf(KindBadRequest, "key %q is both set and deleted", k)
		}
	}
	for k := range r.Set {
		if k == "" {
			return Errorf(KindBadRequest, "empty configuration key")
		}
	}
	return nil
}
