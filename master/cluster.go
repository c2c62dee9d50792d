package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
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
// reached sends the request on to the next: an answer, even an error,
// is the group's answer.
//
// Each master is reached through a [Client] of its own, so a master is
// bounded in time and size, retried and reported exactly as a node is:
// an unreachable master is an [*UnreachableError], a refused certificate
// a [*CertificateError], and so on. The list-procedures' retry policy
// ([RetryPolicies].List) applies to every masterd request.
type Cluster struct {
	urls    []string
	masters []*Client
	opts    Options
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

// Masters returns the URLs of the masters, as given to NewCluster less
// repeats.
func (c *Cluster) Masters() []string { return append([]string(nil), c.urls...) }

// Active returns the URL of the master that answered last: the one the
// next request goes to first.
func (c *Cluster) Active() string { return c.urls[c.last.Load()] }

// Close drops the idle connections to the masters.
func (c *Cluster) Close() {
	for _, m := range c.masters {
		m.Close()
	}
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
// first, the others in random order, until one answers.
func (c *Cluster) do(ctx context.Context, method, path string, in, out any) error {
	first := int(c.last.Load())
	order := []int{first}
	rest := make([]int, 0, len(c.masters)-1)
	for i := range c.masters {
		if i != first {
			rest = append(rest, i)
		}
	}
	// Fisher-Yates, with the seam the retry logic draws its jitter from.
	for i := len(rest) - 1; i > 0; i-- {
		j := int(c.opts.randN(int64(i + 1)))
		rest[i], rest[j] = rest[j], rest[i]
	}
	order = append(order, rest...)
	var errs []error
	for _, i := range order {
		m := c.masters[i]
		_, err := m.invoke(ctx, method, path, m.policies.List, in, out)
		if err == nil || !otherMasterMayAnswer(err) || ctx.Err() != nil {
			if err == nil {
				c.last.Store(int32(i))
			}
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return &NoMasterError{Errs: errs}
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
