package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// Cluster talks to the masterd of a group: who the nodes are, whether
// each is up, and their configuration. It is safe for concurrent use.
//
// A group may have several masters, of which one is active. Each
// request goes first to the master that answered the last one, then to
// the others in random order, so that many clients starting together do
// not all land on the first master of their list, and a client that has
// found the active master stays with it. Only a master that could not be
// reached, refused the client's certificate, disagreed on TLS or is
// shutting down, or a standby, sends the request on to the next: any
// other answer, even an error, is the group's answer.
//
// A standby answers not_active ([*NotActiveError]) naming the active
// master: the request goes there at once, and the Cluster adds that
// master to its own if it was not given, as a node learns masters. A
// standby naming none (an election is under way) makes the Cluster try
// the masters again, backing off as the List policy says, until one is
// active or the policy's MaxElapsed has passed: a request sent during a
// failover waits for the new active master rather than failing. The
// policy's MaxAttempts bounds each master's attempts within a round,
// not the rounds.
//
// A Cluster keeps at most 8 learned masters ([Cluster.Masters]), more
// than a group runs: past that, a master newly named takes the place of
// the learned one named longest ago, unless that one answered last (it
// is the one asked first); each replacement is logged (warn). A standby
// that is broken, or lies, and names another master in every answer
// thus costs a bounded list, and every round a bounded number of
// masters, while the master named last can always be asked; the masters
// given to [NewCluster] are never forgotten.
//
// Each master is reached through a [Client] of its own, so a master is
// bounded in time and size, retried and reported exactly as a node is:
// an unreachable master is an [*UnreachableError], a refused certificate
// a [*CertificateError], and so on. The list-procedures' retry policy
// ([RetryPolicies].List) applies to every masterd request.
type Cluster struct {
	opts Options

	// mu guards urls, masters and named, which grow together as
	// standbys name masters the Cluster was not given, up to given +
	// maxLearned; past that a learned master's slot is given to another.
	// An index, once given, stays valid, but may name another master
	// later: what must know which master it holds holds the *Client.
	mu      sync.Mutex
	urls    []string
	masters []*Client
	// given is how many of masters NewCluster was given; those past it
	// were learned.
	given int
	// named is when each master was last named by a standby, counted
	// in namings (ticks), so that the learned one named longest ago is
	// the one forgotten.
	named []uint64
	ticks uint64
	// last is the index of the master that answered last.
	last atomic.Int32
}

// NewCluster returns a Cluster for the masters at masterURLs
// ("https://host:port", or "http://host:port" with [Options.Insecure]).
// opts are those of [New]: the client certificate presented to masterd
// and to the nodes of [Cluster.UpClients], and the CA both must chain to.
// It touches no network.
func NewCluster(masterURLs []string, opts Options) (*Cluster, error) {
	if len(masterURLs) == 0 {
		return nil, errors.New("master: no masterd URL given")
	}
	c := &Cluster{opts: opts}
	seen := map[string]bool{}
	for _, u := range masterURLs {
		addr, err := addrOfURL(u, opts.Insecure)
		if err != nil {
			return nil, fmt.Errorf("master: masterd %w", err)
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		m, err := New(addr, opts)
		if err != nil {
			return nil, err
		}
		c.urls = append(c.urls, u)
		c.masters = append(c.masters, m)
	}
	if opts.randN == nil {
		c.opts.randN = randN
	}
	if opts.clock == nil {
		c.opts.clock = realClock{}
	}
	c.given = len(c.masters)
	c.named = make([]uint64, c.given)
	c.last.Store(int32(c.opts.randN(int64(len(c.masters)))))
	return c, nil
}

// URLError says that a URL of a master or of a node cannot be called: it
// is not a URL, its scheme is neither http nor https, its scheme
// disagrees with the client's TLS ([Options.Insecure] talks http only),
// or it names no port. It matches rpc.ErrBadRequest with errors.Is.
type URLError struct {
	// URL is the URL as given.
	URL string
	// Why says what is wrong and what to write instead.
	Why string
}

// Error reads `URL "10.0.0.1:1812": want https://host:port`.
func (e *URLError) Error() string { return fmt.Sprintf("URL %q: %s", e.URL, e.Why) }

// Unwrap returns the bad_request kind.
func (e *URLError) Unwrap() error { return &rpc.Error{Kind: rpc.KindBadRequest, Message: e.Error()} }

// addrOfURL returns the host:port of u, an http URL when insecure, else
// an https one.
func addrOfURL(raw string, insecure bool) (string, error) {
	want := "https"
	if insecure {
		want = "http"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", &URLError{URL: raw, Why: "want " + want + "://host:port"}
	}
	if u.Scheme != want {
		why := "it serves TLS, and this client talks plain HTTP (Options.Insecure, noderpc --insecure)"
		if insecure {
			return "", &URLError{URL: raw, Why: why}
		}
		why = "it serves plain HTTP (run with --insecure), and this client talks TLS: use Options.Insecure (noderpc --insecure)"
		return "", &URLError{URL: raw, Why: why}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", &URLError{URL: raw, Why: "want " + want + "://host:port, without a path or query"}
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return "", &URLError{URL: raw, Why: "no port: want " + want + "://host:port"}
	}
	return u.Host, nil
}

// Masters returns the URLs of the masters: those given to NewCluster
// less repeats, then those standbys named as active, at most 8 of them.
func (c *Cluster) Masters() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.urls...)
}

// Active returns the URL of the master that answered last: the one the
// next request goes to first.
func (c *Cluster) Active() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[c.last.Load()]
}

// Close drops the idle connections to the masters.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.masters {
		m.Close()
	}
}

// NotActiveError is the answer of a standby masterd, which serves no
// procedure: it names the active master, or none while an election is
// under way. A [Cluster] follows it by itself; it reaches the caller
// only when no master was active within the List policy's MaxElapsed:
// within a [*NoMasterError], or alone when the Cluster has one master.
// It matches rpc.ErrNotActive with errors.Is.
type NotActiveError struct {
	// Master is the standby's host:port; Procedure the procedure it
	// refused, e.g. "ListNodes".
	Master, Procedure string
	// Active is the URL of the active master the standby named
	// (rpc.HeaderActiveMaster), as it sent it; "" during an election.
	Active string
	// Err is the standby's answer, of kind not_active.
	Err *rpc.Error
}

// Error reads "10.0.0.2:1812: ListNodes: not_active: not active; the
// active master is https://10.0.0.1:1812".
func (e *NotActiveError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Master, e.Procedure, e.Err)
}

// Unwrap returns the standby's answer.
func (e *NotActiveError) Unwrap() error { return e.Err }

// maxFollow is how many standbys naming another master one round
// follows: a standby may name an active master that has just stepped
// down, so one more hop is normal; masters naming each other (an
// election flapping) end the round, which is tried again after a
// back-off.
const maxFollow = 3

// maxLearned bounds the masters a Cluster learns from standbys beside
// those it was given: more than a group runs (doc/ha.md's example
// runs three), so that a Cluster given one master learns all the
// others, while a standby naming masters without end (broken, or
// lying) does not grow the list, each of whose masters every round
// may ask.
const maxLearned = 8

// master returns the i-th master.
func (c *Cluster) master(i int) *Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.masters[i]
}

// answered records that m answered: the next request asks it first. A
// master whose slot went to another meanwhile is not recorded: the next
// request would ask that other one first.
func (c *Cluster) answered(m *Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.masters, m); i >= 0 {
		c.last.Store(int32(i))
	}
}

// learn returns the Client of the master at raw, a URL a standby named,
// adding it to the masters if it is new. Once maxLearned masters are
// learned, a new one takes the place of the learned master named
// longest ago, unless that one answered last: that one is asked first,
// and forgetting it would send the next request to a master only named.
// The masters given are never replaced.
func (c *Cluster) learn(raw string) (*Client, error) {
	addr, err := addrOfURL(raw, c.opts.Insecure)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.ticks++
	for i, m := range c.masters {
		if m.node == addr {
			c.named[i] = c.ticks
			c.mu.Unlock()
			return m, nil
		}
	}
	m, err := New(addr, c.opts)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if len(c.masters)-c.given < maxLearned {
		c.urls = append(c.urls, raw)
		c.masters = append(c.masters, m)
		c.named = append(c.named, c.ticks)
		c.mu.Unlock()
		return m, nil
	}
	victim, last := -1, int(c.last.Load())
	for i := c.given; i < len(c.masters); i++ {
		if i != last && (victim < 0 || c.named[i] < c.named[victim]) {
			victim = i
		}
	}
	old, oldURL := c.masters[victim], c.urls[victim]
	c.urls[victim], c.masters[victim], c.named[victim] = raw, m, c.ticks
	c.mu.Unlock()
	old.Close()
	c.log().Warn("a standby named more masters than a Cluster learns; forgetting the one named longest ago",
		"named", raw, "forgotten", oldURL, "max_learned", maxLearned)
	return m, nil
}

// NoMasterError says that no master of the group could be reached: each
// was unreachable, or refused the client's certificate, or disagreed on
// TLS. It unwraps to each master's error, so errors.Is(err,
// rpc.ErrUnreachable) holds when any master was unreachable. With a
// single master its own error is returned instead.
type NoMasterError struct {
	// Errs are the masters' errors, in the order they were tried.
	Errs []error
}

// Error reads "no masterd answered: 10.0.0.1:1812: unreachable after 3
// attempts over 20s: connection refused; 10.0.0.2:1812: ...".
func (e *NoMasterError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "no masterd answered: " + strings.Join(msgs, "; ")
}

// Unwrap returns each master's error.
func (e *NoMasterError) Unwrap() []error { return e.Errs }

// do sends one masterd procedure to the masters, the last to answer
// first, the others in random order, until one answers; a standby's
// answer naming the active master sends it there next. When a round
// ends with a standby that named no master, an election is under way:
// the masters are tried again, after the List policy's back-off, until
// its MaxElapsed.
func (c *Cluster) do(ctx context.Context, method, path string, in, out any) error {
	pol := c.master(0).policies.List
	clk := c.opts.clock
	giveUp := clk.Now().Add(pol.MaxElapsed)
	// The last error of each master, in the order first tried.
	var tried []*Client
	last := map[*Client]error{}
	noMaster := func() error {
		if len(tried) == 1 {
			return last[tried[0]]
		}
		errs := make([]error, len(tried))
		for k, m := range tried {
			errs[k] = last[m]
		}
		return &NoMasterError{Errs: errs}
	}
	for round := 1; ; round++ {
		answered, electing, err := c.round(ctx, method, path, in, out, pol, func(m *Client, err error) {
			if _, ok := last[m]; !ok {
				tried = append(tried, m)
			}
			last[m] = err
		})
		switch {
		case answered:
			return nil
		case err != nil:
			return err
		case !electing:
			return noMaster()
		}
		delay := pol.backoff(round, c.opts.randN)
		if !clk.Now().Add(delay).Before(giveUp) {
			return noMaster()
		}
		c.log().Debug("no master is active; trying the masters again", "procedure", path, "round", round, "delay", delay)
		if err := clk.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("%w, waiting for an active master: %w", err, noMaster())
		}
	}
}

// round tries each master once, the last to answer first, following
// standbys to the master they name. answered reports that a master
// answered the procedure, out filled; err is an error answer that is
// the group's (neither a standby's nor one that leaves another master
// worth asking), or ctx's end. electing reports that a standby named no
// master, or only masters tried already this round: an election is
// under way. fail records each master's error.
//
// A master is known by its Client, not its index: a standby may name a
// master whose learning gives it the slot of one asked already.
func (c *Cluster) round(ctx context.Context, method, path string, in, out any, pol Policy,
	fail func(m *Client, err error)) (answered, electing bool, err error) {
	c.mu.Lock()
	first := int(c.last.Load())
	queue := append([]*Client{c.masters[first]}, c.masters[:first]...)
	queue = append(queue, c.masters[first+1:]...)
	c.mu.Unlock()
	// Fisher-Yates over those after the first, with the seam the retry
	// logic draws its jitter from.
	rest := queue[1:]
	for i := len(rest) - 1; i > 0; i-- {
		j := int(c.opts.randN(int64(i + 1)))
		rest[i], rest[j] = rest[j], rest[i]
	}
	done := map[*Client]bool{}
	follows := 0
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if done[m] {
			continue
		}
		done[m] = true
		_, err := m.invoke(ctx, method, path, pol, in, out)
		if err == nil {
			c.answered(m)
			return true, false, nil
		}
		if ctx.Err() != nil {
			return false, false, err
		}
		var na *NotActiveError
		switch {
		case errors.As(err, &na) && na.Active != "":
			named, lerr := c.learn(na.Active)
			switch {
			case lerr != nil:
				err = fmt.Errorf("%w; the active master it names cannot be called: %w", err, lerr)
			case done[named] || follows == maxFollow:
				// Named already tried this round, or a chain of
				// standbys: their view is stale, an election is on.
				electing = true
			default:
				follows++
				c.log().Debug("following a standby to the active master", "standby", m.node, "active", na.Active)
				queue = append([]*Client{named}, queue...)
			}
		case errors.As(err, &na):
			electing = true
		case !otherMasterMayAnswer(err):
			return false, false, err
		}
		fail(m, err)
	}
	return false, electing, nil
}

// log is the logger of the Options, or one that discards.
func (c *Cluster) log() *slog.Logger {
	if c.opts.Logger != nil {
		return c.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// otherMasterMayAnswer reports whether err, from one master, leaves
// another master worth asking: this one could not be reached, or will
// not talk to this client, which says nothing of the others. Any other
// answer is the group's.
func otherMasterMayAnswer(err error) bool {
	return errors.Is(err, rpc.ErrUnreachable) || errors.Is(err, rpc.ErrCertificate) ||
		errors.Is(err, rpc.ErrTLSMismatch) || errors.Is(err, rpc.ErrShuttingDown)
}

// Nodes returns every node masterd knows, up or down, sorted by name.
func (c *Cluster) Nodes(ctx context.Context) (*rpc.ListNodesResponse, error) {
	var list rpc.ListNodesResponse
	if err := c.do(ctx, fasthttp.MethodGet, rpc.PathListNodes, nil, &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// Node returns what masterd knows of the node name, with its calls and
// configuration. A node masterd does not know fails with an error
// matching rpc.ErrUnknownNode.
func (c *Cluster) Node(ctx context.Context, name string) (*rpc.Node, error) {
	if name == "" {
		return nil, fmt.Errorf("master: GetNode: %w", rpc.Errorf(rpc.KindBadRequest, "empty node name"))
	}
	var n rpc.Node
	if err := c.do(ctx, fasthttp.MethodPut, rpc.PathGetNode, &rpc.NodeRequest{Node: name}, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// Config returns the configuration of the node named node, or the
// group-wide configuration when node is empty. A node's configuration
// may be asked for before it ever joins.
func (c *Cluster) Config(ctx context.Context, node string) (*rpc.ConfigResponse, error) {
	var cfg rpc.ConfigResponse
	if err := c.do(ctx, fasthttp.MethodPut, rpc.PathGetConfig, &rpc.NodeRequest{Node: node}, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// SetConfig sets and deletes configuration keys, of one node or of the
// group (req.Node empty), and returns the configuration that results. A
// request that changes nothing, or sets and deletes one key, fails with
// rpc.ErrBadRequest before anything is sent. It is safe to retry: a
// change sent twice leaves what it left once.
func (c *Cluster) SetConfig(ctx context.Context, req rpc.SetConfigRequest) (*rpc.ConfigResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("master: SetConfig: %w", err)
	}
	var cfg rpc.ConfigResponse
	if err := c.do(ctx, fasthttp.MethodPut, rpc.PathSetConfig, &req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// UpNode is a node masterd lists up, with a [Client] for it.
type UpNode struct {
	// Node is masterd's record of it.
	Node rpc.Node
	// Client calls it at the URL it advertised; nil when Err is set.
	Client *Client
	// Err says why the node cannot be called: its URL is not one this
	// client can call (a [*URLError]).
	Err error
}

// Up returns the nodes masterd lists up, in name order, each with a
// [Client] made from the Options of the Cluster, at the URL the node
// advertised. A node whose URL this client cannot call (an https URL
// while the client talks plain HTTP, say) has Err set instead of a
// Client; it fails no other node.
func (c *Cluster) Up(ctx context.Context) ([]UpNode, error) {
	list, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var up []UpNode
	for _, n := range list.Nodes {
		if n.State != rpc.NodeUp {
			continue
		}
		u := UpNode{Node: n}
		addr, err := addrOfURL(n.URL, c.opts.Insecure)
		if err == nil {
			u.Client, err = New(addr, c.opts)
		}
		if err != nil {
			u.Err = fmt.Errorf("node %s: %w", n.Name, err)
		}
		up = append(up, u)
	}
	return up, nil
}

// UpClients returns a [Client] for every node masterd lists up, in name
// order, for [CallEach] and [CallEachStream]. A node whose URL this
// client cannot call fails the whole list with its [*URLError]; [Cluster.Up]
// returns the others beside it.
func (c *Cluster) UpClients(ctx context.Context) ([]*Client, error) {
	up, err := c.Up(ctx)
	if err != nil {
		return nil, err
	}
	clients := make([]*Client, 0, len(up))
	var errs []error
	for _, u := range up {
		if u.Err != nil {
			errs = append(errs, u.Err)
			continue
		}
		clients = append(clients, u.Client)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return clients, nil
}
