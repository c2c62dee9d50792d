package masterd

import (
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/noderpc/noderpc/master/registry"
	"github.com/noderpc/noderpc/rpc"
)

// groupWakeDelay is how long a change of the group version waits before
// it wakes the held renewals, so that a storm of joins wakes each at
// most once per window instead of once per join: with 10,000 sessions
// held, every wake is 10,000 answers and as many renewals.
const groupWakeDelay = time.Second

// members is masterd's registry in memory: every node it knows, the
// session of each node that is up, the configuration, and the group
// version. Changes that must survive a restart (joins, leaves, expiries,
// configuration) are written to the store before they are acknowledged;
// renewals only touch memory.
type members struct {
	clock      Clock
	store      registry.Store
	log        *slog.Logger
	timeout    time.Duration // a session's timeout unless the node asks for more
	maxTimeout time.Duration // the most a node may ask for
	// joined, if set, is told of each hello once it is committed
	// (masterd checks that the node answers at its URL); it must not
	// block, as it is called under mu. What it returns, if not "", is
	// the node's problem: it will not be checked.
	joined func(node, url, bootID string) (problem string)

	// cfgMu orders configuration changes, each a read, a write to the
	// store and an install that must not interleave with another's.
	cfgMu sync.Mutex

	mu      sync.Mutex
	version uint64 // the group version
	stamp   uint64 // the last configuration stamp
	nodes   map[string]*member
	group   registry.Entry
	configs map[string]registry.Entry // the nodes' own, members or not
	masters []string
	// groupWake is closed, and replaced, groupWakeDelay after the group
	// version changes: every held renewal waits on it.
	groupWake   chan struct{}
	wakePending bool
	// stopped is closed when masterd stops or steps down: held renewals
	// answer at once.
	stopped chan struct{}
	closed  bool
	// deposed is set when masterd stepped down: every answer is then
	// errNotActive, a held renewal's too.
	deposed bool
}

// errShuttingDown answers a hello or renewal that comes while masterd
// stops: the node tries another master, or this one once restarted.
var errShuttingDown = rpc.Errorf(rpc.KindShuttingDown, "masterd is stopping; say hello again to it once restarted, or to another master")

// errNotActive is the answer of a master that is not, or no longer, the
// active one. The server turns it into rpc.KindNotActive naming the
// active master as it knows it when it answers.
var errNotActive = errors.New("masterd: not the active master")

// closedErr is the answer of a closed registry: not_active once masterd
// stepped down, shutting_down when it stops.
func (ms *members) closedErr() error {
	if ms.deposed {
		return errNotActive
	}
	return errShuttingDown
}

// writeErr is the answer to a request whose write to the store failed:
// not_active when the write was refused because masterd is no longer
// the active master, internal otherwise.
func (ms *members) writeErr(err error, what string) error {
	if errors.Is(err, errNotActive) || errors.Is(err, registry.ErrFenced) {
		ms.log.Warn("a write refused: masterd is no longer the active master", "write", what, "err", err)
		return errNotActive
	}
	ms.log.Error("a change was not recorded", "write", what, "err", err)
	return rpc.Errorf(rpc.KindInternal, "recording %s: %v", what, err)
}

// member is one node masterd knows.
type member struct {
	node rpc.Node // its facts, state and last contact
	// written is the group version of the last change of the node, so
	// that two changes installed out of order keep the later one.
	written uint64
	// session is the ID of its live session, "" when it is down.
	session  string
	timeout  time.Duration
	deadline time.Time
	timer    Timer // its expiry, while it has a session
	// cfgWake is closed, and replaced, when its effective configuration
	// changes.
	cfgWake chan struct{}
	// heldWake is closed to answer the renewal held for the session now,
	// if any: a new renewal to hold replaces it, so that masterd holds
	// one renewal per session however many a node sends.
	heldWake chan struct{}
}

// loadMembers builds the registry from the store: every node it holds
// whose record passes the checks of a hello (loadable), each down until
// it says hello again, which is one write (with a new group version)
// when any was up. self is masterd's own URL, the list of masters; tls
// is whether masterd serves TLS.
func loadMembers(store registry.Store, clock Clock, log *slog.Logger, timeout, maxTimeout time.Duration, self string, tls bool) (*members, error) {
	snap, err := store.Load()
	if err != nil {
		return nil, err
	}
	ms := newMembers(snap, store, clock, log, timeout, maxTimeout, []string{self})
	var down []registry.Record
	for name, r := range loadable(snap, tls, log) {
		n := r.Node
		// Whether it answered was learned by the masterd before.
		n.Reachable, n.Problem = false, ""
		if n.State != rpc.NodeDown {
			n.State = rpc.NodeDown
			down = append(down, registry.Record{Node: n})
		}
		ms.nodes[name] = &member{node: n, written: r.Version, cfgWake: make(chan struct{})}
	}
	change := registry.Change{}
	if !slices.Equal(snap.Masters, ms.masters) {
		change.Masters = ms.masters
	}
	if len(down) > 0 {
		ms.version++
		for i := range down {
			down[i].Version = ms.version
			ms.nodes[down[i].Node.Name].written = ms.version
		}
		change.Version, change.Nodes = ms.version, down
	}
	if change.Nodes != nil || change.Masters != nil {
		if err := store.Write(change); err != nil {
			return nil, err
		}
	}
	log.Info("registry loaded; every node is down until it says hello",
		"nodes", len(ms.nodes), "were_up", len(down), "not_loaded", len(snap.Nodes)-len(ms.nodes), "group_version", ms.version, "masters", ms.masters)
	return ms, nil
}

// loadable is what masterd may serve of the node records of snap: each
// held to the checks a hello gets, which a record written by an older
// masterd, or edited since, may fail. A record that fails the checks of
// the node's own facts (rpc.HelloRequest.Validate, checkScheme), or is
// stored under another name than its own, is logged and left out: a
// hello would be refused, and the node's next hello writes its record
// anew. What a record reports of functions and calls is escaped and
// bounded as a hello's is (repairReported).
func loadable(snap *registry.Snapshot, tls bool, log *slog.Logger) map[string]registry.Record {
	out := make(map[string]registry.Record, len(snap.Nodes))
	for name, r := range snap.Nodes {
		if err := checkRecord(name, &r.Node, tls); err != nil {
			log.Warn("a stored node record fails the checks of a hello: not loaded, until the node's next hello replaces it",
				"node", rpc.Clip(name, rpc.MaxNodeNameLen), "err", err)
			continue
		}
		stored := r.Node
		r.Node.Functions = slices.Clone(stored.Functions) // repaired in place
		if cut := repairReported(&r.Node); cut.any() || !slices.Equal(stored.Functions, r.Node.Functions) || !slices.Equal(stored.Calls, r.Node.Calls) {
			log.Warn("a stored node record reports functions or calls as no hello may: loaded escaped and bounded as a hello's",
				append([]any{"node", name}, cut.logAttrs()...)...)
		}
		out[name] = r
	}
	return out
}

// checkRecord reports why the record n, stored under name, fails the
// checks of a hello's own facts, or nil.
func checkRecord(name string, n *rpc.Node, tls bool) error {
	if n.Name != name {
		return rpc.Errorf(rpc.KindBadRequest, "the record of node %.64q names node %.64q", name, n.Name)
	}
	req := rpc.HelloRequest{Node: n.Name, URL: n.URL, Version: n.Version, BootID: n.BootID, SessionTimeout: n.SessionTimeout}
	if err := req.Validate(); err != nil {
		return err
	}
	return checkScheme(n.URL, tls)
}

// newMembers is the registry of snap, before any node's session.
func newMembers(snap *registry.Snapshot, store registry.Store, clock Clock, log *slog.Logger, timeout, maxTimeout time.Duration, masters []string) *members {
	configs := snap.Configs
	if configs == nil {
		configs = make(map[string]registry.Entry)
	}
	return &members{
		clock: clock, store: store, log: log, timeout: timeout, maxTimeout: maxTimeout,
		version: snap.Version, stamp: snap.Stamp,
		nodes: make(map[string]*member, len(snap.Nodes)), group: snap.Group, configs: configs,
		masters:   masters,
		groupWake: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// takeOver builds the registry of a master just elected from what the
// store holds, written by the previous active master. A node listed up
// stays up, on a session of its timeout from now whose ID no node
// holds: its next renewal is unknown_session and it says hello, which
// replaces that session; a node that does not within the timeout is
// marked down as any whose session lapsed. Nothing is written: the
// nodes that say hello in time are never seen down. A record that fails
// the checks of a hello is left out, as loadMembers leaves it (loadable);
// tls is whether masterd serves TLS.
func takeOver(snap *registry.Snapshot, store registry.Store, clock Clock, log *slog.Logger, timeout, maxTimeout time.Duration, masters []string, tls bool) *members {
	ms := newMembers(snap, store, clock, log, timeout, maxTimeout, masters)
	now := clock.Now()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	up := 0
	for name, r := range loadable(snap, tls, log) {
		n := r.Node
		// Whether it answered was learned by the previous master.
		n.Reachable, n.Problem = false, ""
		m := &member{node: n, written: r.Version, cfgWake: make(chan struct{})}
		ms.nodes[name] = m
		if n.State != rpc.NodeUp {
			continue
		}
		up++
		sid := "takeover-" + uuid.NewString()
		m.session, m.timeout = sid, ms.sessionTimeout(n.SessionTimeout)
		m.deadline = now.Add(m.timeout)
		m.timer = clock.AfterFunc(m.timeout, func() { ms.expire(name, sid) })
	}
	log.Info("registry taken over; nodes listed up stay up until their session timeout unless they say hello",
		"nodes", len(ms.nodes), "up", up, "not_loaded", len(snap.Nodes)-len(ms.nodes), "group_version", ms.version, "masters", masters)
	return ms
}

// setMasters replaces the list of masters every session is told of.
func (ms *members) setMasters(masters []string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.masters = masters
}

// groupVersion is the membership version now.
func (ms *members) groupVersion() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.version
}

// sessionTimeout is the timeout of a session whose node asked for
// asked seconds (0: no wish).
func (ms *members) sessionTimeout(asked float64) time.Duration {
	return min(max(ms.timeout, rpc.Duration(asked)), ms.maxTimeout)
}

// hello opens a session for the node of req, once its facts are
// committed. A hello with a new boot id marks the calls of the old boot
// that had not finished as lost.
func (ms *members) hello(req *rpc.HelloRequest) (rpc.Session, error) {
	timeout := ms.sessionTimeout(req.SessionTimeout)
	ms.mu.Lock()
	if ms.closed {
		ms.mu.Unlock()
		return rpc.Session{}, ms.closedErr()
	}
	now := ms.clock.Now()
	node := rpc.Node{
		Name: req.Node, State: rpc.NodeUp, URL: req.URL, LastContact: now, Joined: now,
		BootID: req.BootID, Version: req.Version, Protocol: req.Protocol,
		SessionTimeout: timeout.Seconds(), Functions: req.Functions,
	}
	lost := 0
	if m := ms.nodes[req.Node]; m != nil {
		if m.session != "" && m.node.URL != req.URL {
			// A restarted node keeps its URL; two nodes under one name
			// take each other's session at every renewal, forever.
			ms.log.Warn("a hello replaces the live session of a node at another URL: do two nodes share this name?",
				"node", req.Node, "url", req.URL, "live_url", m.node.URL, "boot_id", req.BootID, "live_boot_id", m.node.BootID)
		}
		node.Calls, lost = earlierCalls(m.node, req.BootID)
		// The old session ends here: an expiry of it during the write
		// would record the node down over the hello.
		m.endSession()
	}
	for _, c := range req.Calls {
		node.Calls = append(node.Calls, rpc.NodeCall{CallSummary: c})
	}
	ms.version++
	v := ms.version
	ms.mu.Unlock()

	if err := ms.store.Write(registry.Change{Version: v, Nodes: []registry.Record{{Node: node, Version: v}}}); err != nil {
		werr := ms.writeErr(err, "the hello of "+req.Node)
		if errors.Is(werr, errNotActive) {
			return rpc.Session{}, werr
		}
		ms.mu.Lock()
		if m := ms.nodes[req.Node]; m != nil && m.session == "" && m.node.State == rpc.NodeUp && m.written < v {
			// The hello ended the node's session: listed up without one,
			// nothing would ever mark it down. Its record on disk says
			// up until the node's next hello, or a restart of masterd,
			// which marks every node down.
			ms.downLocked(m)
		}
		ms.mu.Unlock()
		return rpc.Session{}, werr
	}

	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.closed {
		// Recorded, but no session is kept: the node tries another
		// master (not_active once this one stepped down), or this one
		// once restarted.
		return rpc.Session{}, ms.closedErr()
	}
	m := ms.nodes[req.Node]
	if m == nil {
		m = &member{cfgWake: make(chan struct{})}
		ms.nodes[req.Node] = m
	}
	if m.written > v {
		// Another hello of the node came after this one and won; this
		// one's session never lived.
		return rpc.Session{}, rpc.Errorf(rpc.KindUnknownSession, "a later hello of node %s replaced this one; say hello again", req.Node)
	}
	m.endSession()
	m.written, m.node = v, node
	m.session, m.timeout, m.deadline = uuid.NewString(), timeout, now.Add(timeout)
	sid := m.session
	m.timer = ms.clock.AfterFunc(m.deadline.Sub(ms.clock.Now()), func() { ms.expire(req.Node, sid) })
	ms.wakeGroupLocked()
	attrs := []any{"node", req.Node, "url", req.URL, "boot_id", req.BootID, "version", req.Version,
		"session_timeout", timeout, "group_version", v}
	if lost > 0 {
		attrs = append(attrs, "calls_lost", lost)
	}
	ms.log.Info("node joined", attrs...)
	if ms.joined != nil {
		m.node.Problem = ms.joined(req.Node, req.URL, req.BootID)
	}
	return ms.sessionLocked(req.Node, m), nil
}

// maxLostCalls bounds the lost calls kept in a node's record, the most
// recently lost: without it a node that reboots again and again with
// unfinished calls grows its record, written whole at every hello, and
// masterd's memory without end.
const maxLostCalls = 1000

// earlierCalls are the calls of n that a hello with bootID keeps: those
// already lost, and, when bootID is a new boot, those of the old boot
// that had not finished, now lost too (at most maxLostCalls in all, the
// most recent); lost is how many became lost.
func earlierCalls(n rpc.Node, bootID string) (calls []rpc.NodeCall, lost int) {
	if n.BootID == bootID {
		// The same boot: its calls come again with the hello.
		for _, c := range n.Calls {
			if c.Lost {
				calls = append(calls, c)
			}
		}
		return calls, 0
	}
	for _, c := range n.Calls {
		if !c.Lost && !c.State.Finished() {
			c.Lost = true
			lost++
		}
		if c.Lost {
			calls = append(calls, c)
		}
	}
	if len(calls) > maxLostCalls {
		// The earlier lost come first: they go.
		calls = slices.Clone(calls[len(calls)-maxLostCalls:])
	}
	return calls, lost
}

// endSession stops m's session, if it has one.
func (m *member) endSession() {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.session = ""
}

// renew renews the session of req and answers when the group version or
// the node's configuration version differs from what the node knows, or
// when the hold ends, or at once when masterd stops.
func (ms *members) renew(req *rpc.RenewRequest) (rpc.Session, error) {
	ms.mu.Lock()
	if ms.closed {
		ms.mu.Unlock()
		return rpc.Session{}, ms.closedErr()
	}
	m, err := ms.sessionOf(req.Node, req.Session)
	if err != nil {
		ms.mu.Unlock()
		return rpc.Session{}, err
	}
	now := ms.clock.Now()
	m.deadline = now.Add(m.timeout)
	m.timer.Reset(m.timeout)
	m.node.LastContact = now
	s := ms.sessionLocked(req.Node, m)
	hold := min(rpc.Duration(req.Hold), maxHold(m.timeout))
	groupWake, cfgWake, stopped := ms.groupWake, m.cfgWake, ms.stopped
	if s.GroupVersion != req.GroupVersion || s.ConfigVersion != req.ConfigVersion || hold <= 0 {
		ms.mu.Unlock()
		return s, nil
	}
	if m.heldWake != nil {
		close(m.heldWake) // the renewal held until now answers
	}
	replaced := make(chan struct{})
	m.heldWake = replaced
	ms.mu.Unlock()
	held := make(chan struct{})
	t := ms.clock.AfterFunc(hold, func() { close(held) })
	select {
	case <-held:
	case <-groupWake:
	case <-cfgWake:
	case <-stopped:
	case <-replaced:
	}
	t.Stop()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m.heldWake == replaced {
		m.heldWake = nil
	}
	if ms.deposed {
		// The session is the deposed master's: the node must go to the
		// active one.
		return rpc.Session{}, errNotActive
	}
	if m, err = ms.sessionOf(req.Node, req.Session); err != nil {
		return rpc.Session{}, err
	}
	return ms.sessionLocked(req.Node, m), nil
}

// maxHold is the longest a renewal is held in a session of timeout: the
// node then has two thirds of the timeout left to send the next.
func maxHold(timeout time.Duration) time.Duration { return timeout / 3 }

// sessionOf returns the member whose live session is sid.
func (ms *members) sessionOf(node, sid string) (*member, error) {
	m := ms.nodes[node]
	if m == nil || m.session == "" || m.session != sid {
		return nil, rpc.Errorf(rpc.KindUnknownSession, "node %s holds no session %s here (it lapsed, was replaced, or masterd restarted): say hello again", node, sid)
	}
	return m, nil
}

// leave closes the session of req: the node is down, at once.
func (ms *members) leave(req *rpc.LeaveRequest) error {
	ms.mu.Lock()
	if ms.deposed {
		ms.mu.Unlock()
		return errNotActive
	}
	m, err := ms.sessionOf(req.Node, req.Session)
	if err != nil {
		ms.mu.Unlock()
		return err
	}
	m.node.LastContact = ms.clock.Now()
	rec := ms.downLocked(m)
	ms.mu.Unlock()
	if err := ms.store.Write(registry.Change{Version: rec.Version, Nodes: []registry.Record{rec}}); err != nil {
		return ms.writeErr(err, "the leave of "+req.Node)
	}
	ms.log.Info("node left", "node", req.Node, "group_version", rec.Version)
	return nil
}

// expire marks the node down if its session sid has lapsed. It runs on
// the session's timer.
func (ms *members) expire(node, sid string) {
	ms.mu.Lock()
	m := ms.nodes[node]
	if m == nil || m.session != sid || ms.closed {
		ms.mu.Unlock()
		return
	}
	now := ms.clock.Now()
	if left := m.deadline.Sub(now); left > 0 {
		// A renewal moved the deadline as the timer fired.
		m.timer.Reset(left)
		ms.mu.Unlock()
		return
	}
	last := m.node.LastContact
	rec := ms.downLocked(m)
	ms.mu.Unlock()
	ms.log.Warn("node down: its session lapsed", "node", node, "last_contact", last.UTC().Format(time.RFC3339Nano),
		"silent_for", now.Sub(last).Round(time.Millisecond), "group_version", rec.Version)
	if err := ms.store.Write(registry.Change{Version: rec.Version, Nodes: []registry.Record{rec}}); err != nil {
		ms.writeErr(err, "the expiry of "+node)
	}
}

// downLocked ends m's session, marks it down with a new group version
// and returns the record to write.
func (ms *members) downLocked(m *member) registry.Record {
	m.endSession()
	m.node.State = rpc.NodeDown
	ms.version++
	m.written = ms.version
	ms.wakeGroupLocked()
	return registry.Record{Node: m.node, Version: ms.version}
}

// wakeGroupLocked wakes the held renewals groupWakeDelay from now,
// unless a wake is already due.
func (ms *members) wakeGroupLocked() {
	if ms.wakePending {
		return
	}
	ms.wakePending = true
	ms.clock.AfterFunc(groupWakeDelay, func() {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		close(ms.groupWake)
		ms.groupWake = make(chan struct{})
		ms.wakePending = false
	})
}

// sessionLocked is the answer to a hello or renewal of m.
func (ms *members) sessionLocked(name string, m *member) rpc.Session {
	return rpc.Session{
		ID:            m.session,
		Timeout:       m.timeout.Seconds(),
		RenewWithin:   maxHold(m.timeout).Seconds(),
		GroupVersion:  ms.version,
		ConfigVersion: ms.configVersionLocked(name),
		Config:        ms.effectiveLocked(name),
		Masters:       slices.Clone(ms.masters),
	}
}

// configVersionLocked is the version of name's effective configuration.
func (ms *members) configVersionLocked(name string) uint64 {
	return max(ms.group.Stamp, ms.configs[name].Stamp)
}

// effectiveLocked is name's effective configuration: the group's keys
// overridden by its own.
func (ms *members) effectiveLocked(name string) rpc.Config {
	eff := make(rpc.Config, len(ms.group.Keys)+len(ms.configs[name].Keys))
	maps.Copy(eff, ms.group.Keys)
	maps.Copy(eff, ms.configs[name].Keys)
	return eff
}

// list is every node, sorted by name, without calls or configuration.
func (ms *members) list() rpc.ListNodesResponse {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	nodes := make([]rpc.Node, 0, len(ms.nodes))
	for _, m := range ms.nodes {
		n := m.node
		n.Calls, n.Config = nil, nil
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b rpc.Node) int { return strings.Compare(a.Name, b.Name) })
	return rpc.ListNodesResponse{GroupVersion: ms.version, Nodes: nodes}
}

// get is one node with its calls and effective configuration.
func (ms *members) get(name string) (rpc.Node, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.nodes[name]
	if m == nil {
		return rpc.Node{}, unknownNode(name)
	}
	n := m.node
	n.Calls = slices.Clone(n.Calls)
	n.Config = ms.effectiveLocked(name)
	return n, nil
}

func unknownNode(name string) error {
	return rpc.Errorf(rpc.KindUnknownNode, "no node %q has ever said hello to this master", name)
}

// config is the configuration of name ("" for the group's).
func (ms *members) config(name string) rpc.ConfigResponse {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.configLocked(name)
}

func (ms *members) configLocked(name string) rpc.ConfigResponse {
	r := rpc.ConfigResponse{Node: name, Group: orEmpty(ms.group.Keys), Effective: ms.effectiveLocked(name)}
	if name != "" {
		r.Own = orEmpty(ms.configs[name].Keys)
	}
	return r
}

func orEmpty(c rpc.Config) rpc.Config {
	if c == nil {
		return rpc.Config{}
	}
	return maps.Clone(c)
}

// setConfig applies req once committed, and wakes the held renewals of
// every node whose effective configuration it changes.
func (ms *members) setConfig(req *rpc.SetConfigRequest) (rpc.ConfigResponse, error) {
	ms.cfgMu.Lock()
	defer ms.cfgMu.Unlock()
	ms.mu.Lock()
	if ms.deposed {
		ms.mu.Unlock()
		return rpc.ConfigResponse{}, errNotActive
	}
	old := ms.group
	if req.Node != "" {
		old = ms.configs[req.Node]
	}
	keys := orEmpty(old.Keys)
	for _, k := range req.Delete {
		delete(keys, k)
	}
	maps.Copy(keys, req.Set)
	ms.stamp++
	entry := registry.Entry{Keys: keys, Stamp: ms.stamp}
	ms.mu.Unlock()

	if err := ms.store.Write(registry.Change{Config: &registry.ConfigChange{Node: req.Node, Entry: entry}}); err != nil {
		return rpc.ConfigResponse{}, ms.writeErr(err, "a configuration change")
	}

	ms.mu.Lock()
	defer ms.mu.Unlock()
	if req.Node == "" {
		ms.group = entry
		for _, m := range ms.nodes {
			m.wakeConfig()
		}
	} else {
		ms.configs[req.Node] = entry
		if m := ms.nodes[req.Node]; m != nil {
			m.wakeConfig()
		}
	}
	scope := req.Node
	if scope == "" {
		scope = "(group)"
	}
	ms.log.Info("configuration changed", "node", scope, "set", slices.Sorted(maps.Keys(req.Set)), "deleted", req.Delete, "stamp", entry.Stamp)
	return ms.configLocked(req.Node), nil
}

func (m *member) wakeConfig() {
	close(m.cfgWake)
	m.cfgWake = make(chan struct{})
}

// setReachable records what calling the node at url found, if the
// node is still on the boot that was checked and at that URL.
func (ms *members) setReachable(node, url, bootID, problem string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.nodes[node]
	if m == nil || m.node.BootID != bootID || m.node.URL != url {
		return
	}
	m.node.Reachable, m.node.Problem = problem == "", problem
}

// close ends every session's timer without marking any node down (a
// restarted masterd marks them all down itself) and answers the held
// renewals.
func (ms *members) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.closeLocked()
}

// depose closes the registry of a master that stepped down: every held
// renewal, and every request after, answers errNotActive, and no timer
// of it writes again.
func (ms *members) depose() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.deposed = true
	ms.closeLocked()
}

func (ms *members) closeLocked() {
	if ms.closed {
		return
	}
	ms.closed = true
	for _, m := range ms.nodes {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	close(ms.stopped)
}
