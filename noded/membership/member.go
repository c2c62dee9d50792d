// Package membership is a node's member of its group: once noded serves,
// it says hello to one of its masters, holds the session the active
// master grants by renewing it back to back, says hello again when the
// session is lost, and leaves when noded stops. doc/protocol.md gives
// the rules, doc/operations.md the flags.
//
// The node initiates every exchange (the master never calls a node to
// find it), as OpenPBS's MOM starts the dialogue with its server: a node
// that boots, or a master that restarts, needs no list of the other
// side, and a node behind a slow link is never waited on.
package membership

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// The deadlines of the node's requests.
const (
	// helloTimeout bounds a hello: masterd writes a join to disk, durably,
	// before it answers, which a loaded disk may take seconds over.
	helloTimeout = 5 * time.Second
	// renewMargin is how much longer than its hold a renewal may take: a
	// held answer arriving late must not be taken for a dead master. A
	// master that stopped (SIGSTOP, a frozen VM) is thus seen at most
	// hold + renewMargin after the renewal went out; one whose host
	// died sooner, through keepalive (service.DefaultDeadPeer).
	renewMargin = 3 * time.Second
	// minRenewGap spaces renewals that a master answered at once with
	// nothing new, which a masterd holding nothing would otherwise
	// receive in a tight loop.
	minRenewGap = time.Second
	// LeaveTimeout bounds the leave noded sends when it stops: an
	// unreachable master must not hold up the shutdown longer.
	LeaveTimeout = time.Second
)

// Config is what a Member is made from.
type Config struct {
	// Masters are the configured master URLs, as CheckURL returns them;
	// at least one.
	Masters []string
	// Node is the node's name; URL where masters and clients call it;
	// BootID the daemon's boot id (rpc.VersionResponse.BootID).
	Node, URL, BootID string
	// SessionTimeout, when above 0, asks masterd for a longer session
	// timeout than its default.
	SessionTimeout time.Duration
	// Facts returns the functions and calls the node has now, sent with
	// every hello.
	Facts func() ([]rpc.Function, []rpc.CallSummary)
	// TLS returns the configuration of one TLS connection to a master
	// at serverName: the node's certificate and the cluster CA, read at
	// each dial so a reload of noded's certificates applies. Nil speaks
	// plain HTTP (noded --insecure). The master role is checked here.
	TLS func(serverName string) (*tls.Config, error)
	// Logger receives every change of the membership; nil discards.
	Logger *slog.Logger
	// Rand returns a number in [0, n); nil is math/rand/v2's. Tests set
	// it to fix the order masters are tried in and the back-off.
	Rand func(n int64) int64
	// After is time.After; tests set a clock of their own.
	After func(time.Duration) <-chan time.Time
	// Now is time.Now; tests set a clock of their own.
	Now func() time.Time
}

// Status is what a node knows of its group at one moment.
type Status struct {
	// Master is the URL of the master holding the node's session; empty
	// while the node holds none.
	Master string
	// Session is the session's ID, Timeout its timeout.
	Session string
	Timeout time.Duration
	// GroupVersion, ConfigVersion and Config are the latest the node
	// heard of; they stay when the session is lost.
	GroupVersion, ConfigVersion uint64
	Config                      rpc.Config
	// Masters are the masters the node knows: the configured ones, then
	// those the last session named.
	Masters []string
}

// Member is a node's membership of its group.
type Member struct {
	cfg     Config
	log     *slog.Logger
	pick    picker
	clients map[string]*client

	mu     sync.Mutex
	status Status
	// heard is set by the first answer: its configuration is logged
	// whatever its version.
	heard bool
	// followed is the active master a standby named last, so a node
	// backing off during an election logs each new one once.
	followed string
}

// New checks cfg and returns its Member; it starts nothing.
func New(cfg Config) (*Member, error) {
	if len(cfg.Masters) == 0 {
		return nil, errors.New("membership: no master to say hello to")
	}
	masters := make([]string, 0, len(cfg.Masters))
	for _, raw := range cfg.Masters {
		u, err := CheckURL("--master", raw, cfg.TLS == nil)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(masters, u) {
			masters = append(masters, u)
		}
	}
	cfg.Masters = masters
	if cfg.Node == "" || cfg.URL == "" || cfg.BootID == "" || cfg.Facts == nil {
		return nil, errors.New("membership: Node, URL, BootID and Facts are required")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Int64N
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Member{cfg: cfg, log: cfg.Logger, pick: picker{rand: cfg.Rand}, clients: make(map[string]*client)}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.status.Masters = slices.Clone(cfg.Masters)
	return m, nil
}

// Status returns what the node knows of its group now.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Masters = slices.Clone(s.Masters)
	return s
}

// Held reports whether the node holds a session now.
func (m *Member) Held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status.Session != ""
}

// Run says hello and holds the session until ctx ends, then leaves,
// within LeaveTimeout, and returns.
//
// A standby's not_active answer naming the active master sends the
// next hello there at once, without back-off, as does a renewal the
// master answers not_active because it stepped down; an answer naming
// no master (an election is under way) is backed off from as any
// failure is, except that once a standby has answered, the wait stops
// growing at electionStep's ceiling for electionWindow: the node must
// not sleep through the election's end.
func (m *Member) Run(ctx context.Context) {
	// failed counts the failed hellos since the last session; step is
	// the back-off's, which standbys' answers hold down from since, when
	// the node lost its session or started without one, on.
	failed, step := 0, 0
	since := m.cfg.Now()
	standbys := false
	var lastErr error
	// next is the master to say hello to now, named by a standby; empty,
	// the picker chooses. follows counts the standbys followed since
	// the last back-off or session.
	next, follows := "", 0
	// churn counts the sessions in a row lost before they had lived
	// their timeout to a later hello of this node's name: another node
	// is using the name, and each hello takes the other's session. Each
	// such loss waits out a growing back-off, so that two twins cost
	// masterd a join (a disk write and a group version) every
	// backoffCap rather than several a second, forever.
	churn := 0
	for {
		master := next
		if master == "" {
			master = m.pick.next(m.Status().Masters)
		}
		s, err := m.hello(ctx, master)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// A standby followed counts, though its answer is no
			// failure: the master it names may be the dead one.
			standbys = standbys || errors.Is(err, rpc.ErrNotActive)
			var changed bool
			if next, changed = m.follow(master, err, follows); next != "" {
				follows++
				if changed {
					m.log.Info("not the active master; saying hello to the one it named", "master", master, "active", next)
				}
				continue
			}
			follows = 0
			failed++
			step++
			if standbys && m.cfg.Now().Sub(since) < electionWindow {
				step = min(step, electionStep)
			}
			lastErr = err
			m.logFailure(failed, step, err)
			select {
			case <-m.cfg.After(backoff(step, m.cfg.Rand)):
			case <-ctx.Done():
				return
			}
			continue
		}
		m.joined(master, s, failed, lastErr)
		failed, step, standbys, lastErr, follows = 0, 0, false, nil, 0
		joinedAt := m.cfg.Now()
		err = m.hold(ctx, master, s)
		m.drop()
		if ctx.Err() != nil {
			m.leave(master, s.ID)
			return
		}
		m.pick.reset()
		if errors.Is(err, rpc.ErrUnknownSession) && m.cfg.Now().Sub(joinedAt) < rpc.Duration(s.Timeout) {
			churn++
			m.log.Warn("lost the session soon after joining: is another node using this name? backing off",
				"master", master, "node", m.cfg.Node, "lost_in_a_row", churn, "err", err)
			select {
			case <-m.cfg.After(backoff(churn, m.cfg.Rand)):
			case <-ctx.Done():
				return
			}
			continue
		}
		churn = 0
		since, standbys = m.cfg.Now(), errors.Is(err, rpc.ErrNotActive)
		if next, _ = m.follow(master, err, 0); next != "" {
			follows = 1
			m.log.Warn("lost the session: the master is no longer active; saying hello to the active master it named",
				"master", master, "active", next)
			continue
		}
		m.log.Warn("lost the session; saying hello again", "master", master, "err", err)
	}
}

// maxFollow is how many not_active answers in a row a node follows to
// the master each names before it backs off. A standby names the active
// master it last heard of, which may have stepped down since, so one
// more hop is normal; masters naming each other (an election flapping)
// must not make the node send hellos in a tight loop.
const maxFollow = 3

// follow returns the active master named by err, a not_active answer of
// the master from, checked as a configured master is and added to the
// known masters; "" when err is no such answer, names no master (an
// election is under way), names one this node cannot speak to or from
// itself, or the node has followed maxFollow answers in a row already.
// changed reports whether it is another master than the one followed
// last: the caller logs it then, so a node that backs off during an
// election and is sent to the same master again logs it once.
func (m *Member) follow(from string, err error, follows int) (active string, changed bool) {
	var na *NotActiveError
	if !errors.As(err, &na) || na.Active == "" {
		return "", false
	}
	if follows >= maxFollow {
		m.log.Warn("masters keep naming another as active; backing off", "follows", follows, "master", from, "active", na.Active)
		return "", false
	}
	u, err := CheckURL("the active master a standby named", na.Active, m.cfg.TLS == nil)
	if err != nil {
		m.log.Warn("ignoring the active master a standby named", "master", from, "err", err)
		return "", false
	}
	if u == from {
		// Not active, and naming itself: it is not the one to ask.
		return "", false
	}
	m.mu.Lock()
	if !slices.Contains(m.status.Masters, u) {
		if learned := m.status.Masters[len(m.cfg.Masters):]; len(learned) >= maxLearnedMasters {
			m.log.Warn("forgetting the master learned longest ago: a node keeps at most this many it was not configured with",
				"forgotten", learned[0], "max", maxLearnedMasters)
			m.status.Masters = slices.Delete(m.status.Masters, len(m.cfg.Masters), len(m.cfg.Masters)+1)
		}
		m.status.Masters = append(m.status.Masters, u)
	}
	changed = m.followed != u
	m.followed = u
	m.mu.Unlock()
	return u, changed
}

// logFailure logs the failures of hellos that change what an operator
// should know: the first (the node has no session now) and the one from
// which the node tries at the capped interval. The others are at debug.
// step is the back-off's step after it.
func (m *Member) logFailure(failed, step int, err error) {
	switch {
	case failed == 1:
		m.log.Warn("hello failed; trying the masters with back-off", "err", err, "masters", m.Status().Masters)
	case ceiling(step) == backoffCap && ceiling(step-1) < backoffCap:
		m.log.Warn("no master took the hello; trying at the capped interval as long as noded runs",
			"attempts", failed, "interval", backoffCap, "err", err)
	default:
		m.log.Debug("hello failed", "attempts", failed, "err", err)
	}
}

// hello says hello to master.
func (m *Member) hello(ctx context.Context, master string) (rpc.Session, error) {
	fns, calls := m.cfg.Facts()
	if fns == nil {
		fns = []rpc.Function{}
	}
	if calls == nil {
		calls = []rpc.CallSummary{}
	}
	req := rpc.HelloRequest{
		Node:           m.cfg.Node,
		URL:            m.cfg.URL,
		Version:        rpc.Version,
		Protocol:       rpc.ProtocolVersion,
		BootID:         m.cfg.BootID,
		Functions:      fns,
		Calls:          calls,
		SessionTimeout: rpc.Seconds(m.cfg.SessionTimeout),
	}
	var s rpc.Session
	if err := m.client(master).call(ctx, rpc.PathHello, &req, &s, time.Now().Add(helloTimeout)); err != nil {
		return s, err
	}
	if s.ID == "" || s.Timeout <= 0 {
		return s, &MasterError{Master: master, Procedure: rpc.PathHello,
			Err: rpc.Errorf(rpc.KindInternal, "the session has no id or no timeout: %+v", s)}
	}
	return s, nil
}

// joined records the session s master granted and says so.
func (m *Member) joined(master string, s rpc.Session, failed int, lastErr error) {
	m.mu.Lock()
	old := m.status
	m.status.Master, m.status.Session, m.status.Timeout = master, s.ID, rpc.Duration(s.Timeout)
	m.mu.Unlock()
	attrs := []any{"master", master, "session_timeout", rpc.Duration(s.Timeout), "group_version", s.GroupVersion}
	if failed > 0 {
		attrs = append(attrs, "attempts", failed+1, "last_err", lastErr)
	}
	m.log.Info("joined the group", attrs...)
	m.learn(old, s)
}

// drop forgets the session, keeping what the node learned of the group.
func (m *Member) drop() {
	m.mu.Lock()
	m.status.Master, m.status.Session, m.status.Timeout = "", "", 0
	m.mu.Unlock()
}

// learn takes the versions, the configuration and the masters of an
// answer, and logs a change of configuration once. old is the status
// before.
func (m *Member) learn(old Status, s rpc.Session) {
	masters := m.merge(s.Masters)
	m.mu.Lock()
	m.status.GroupVersion, m.status.ConfigVersion, m.status.Masters = s.GroupVersion, s.ConfigVersion, masters
	configChanged := s.ConfigVersion != old.ConfigVersion || !m.heard
	m.heard = true
	if configChanged {
		m.status.Config = s.Config
	}
	m.mu.Unlock()
	if configChanged {
		m.log.Info("configuration", "version", s.ConfigVersion, "keys", keys(s.Config))
	}
	if s.GroupVersion != old.GroupVersion {
		m.log.Debug("group version", "version", s.GroupVersion)
	}
	if !slices.Equal(masters, old.Masters) {
		m.log.Info("masters", "masters", masters)
	}
}

// merge returns the configured masters followed by those of learned
// that are usable and not configured. A learned URL of the wrong scheme
// is logged and skipped: it names a master this node cannot speak to.
func (m *Member) merge(learned []string) []string {
	known := slices.Clone(m.cfg.Masters)
	for i, raw := range learned {
		u, err := CheckURL("masterd's list of masters", raw, m.cfg.TLS == nil)
		if err != nil {
			m.log.Warn("ignoring a master masterd named", "err", err)
			continue
		}
		if slices.Contains(known, u) {
			continue
		}
		if len(known)-len(m.cfg.Masters) == maxLearnedMasters {
			m.log.Warn("ignoring the rest of the masters masterd named: a node keeps at most this many it was not configured with",
				"max", maxLearnedMasters, "ignored", len(learned)-i)
			break
		}
		known = append(known, u)
	}
	return known
}

// maxLearnedMasters bounds the masters a node knows beyond its configured
// ones, learned from a session's list or from a standby naming the active
// master. A group has a handful of masters; the bound keeps a broken or
// hostile masterd from making the node hold, and say hello to, any number
// of URLs. From a session's list the first ones are kept; a standby
// naming one more replaces the one learned longest ago, so that the
// master named last, the one most likely active, is always among them.
const maxLearnedMasters = 8

// hold renews the session s with master back to back until a renewal
// fails or ctx ends.
func (m *Member) hold(ctx context.Context, master string, s rpc.Session) error {
	// A third of the timeout (masterd's cap): masterd counts the
	// session from the receipt of a renewal, and a held one ends at
	// most that long after it, leaving two thirds of the timeout for
	// the next to arrive.
	hold := rpc.Duration(s.Timeout) / 3
	gap := min(minRenewGap, rpc.Duration(s.RenewWithin)/2)
	for {
		req := rpc.RenewRequest{
			Node: m.cfg.Node, Session: s.ID,
			GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion,
			Hold: rpc.Seconds(hold),
		}
		sent := time.Now()
		var next rpc.Session
		if err := m.client(master).call(ctx, rpc.PathRenew, &req, &next, sent.Add(hold+renewMargin)); err != nil {
			return err
		}
		if next.ID != "" && next.ID != s.ID {
			return &MasterError{Master: master, Procedure: rpc.PathRenew,
				Err: rpc.Errorf(rpc.KindUnknownSession, "renewed session %s, got %s", s.ID, next.ID)}
		}
		old := m.Status()
		m.learn(old, next)
		unchanged := next.GroupVersion == s.GroupVersion && next.ConfigVersion == s.ConfigVersion
		next.ID = s.ID
		if next.Timeout > 0 && next.Timeout != s.Timeout {
			hold = rpc.Duration(next.Timeout) / 3
		}
		s = next
		if wait := gap - time.Since(sent); unchanged && wait > 0 {
			select {
			case <-m.cfg.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// leave closes the session with master, within LeaveTimeout: noded is
// stopping, and the master should list it down now rather than when the
// session lapses.
func (m *Member) leave(master, session string) {
	// The session's client: its held renewal's connection was closed
	// as ctx ended, and the leave takes another.
	c := m.client(master)
	req := rpc.LeaveRequest{Node: m.cfg.Node, Session: session}
	if err := c.call(context.Background(), rpc.PathLeave, &req, nil, time.Now().Add(LeaveTimeout)); err != nil {
		m.log.Warn("leaving the group: the master did not hear it; it lists the node down when the session lapses", "err", err)
		return
	}
	c.hc.CloseIdleConnections()
	m.log.Info("left the group", "master", master)
}

// client returns the client of master, made on first use. Only Run's
// goroutine calls it.
//
// Making one forgets the clients of masters the node no longer knows, so
// that the clients stay as bounded as the masters (maxLearnedMasters).
func (m *Member) client(master string) *client {
	c, ok := m.clients[master]
	if !ok {
		known := m.Status().Masters
		for u, old := range m.clients {
			if !slices.Contains(known, u) {
				old.hc.CloseIdleConnections()
				delete(m.clients, u)
			}
		}
		c = newClient(master, m.cfg.TLS)
		m.clients[master] = c
	}
	return c
}

func keys(c rpc.Config) []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
