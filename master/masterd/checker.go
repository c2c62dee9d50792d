package masterd

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/noderpc/noderpc/master"
)

// checker calls each node that said hello at the URL it advertised, with
// masterd's own certificate, and records whether the node answers with
// the boot id of its hello: a node that masterd lists as up but nobody
// can call is a misconfigured --advertise, and its operator must hear of
// it.
//
// A storm of hellos must cost neither a goroutine nor a connection per
// hello: at most checksAtOnce workers call nodes, and a node has at most
// one check waiting, that of its last hello, since a check of an earlier
// boot id or URL can only be ignored. A hello that comes while its
// node's check is under way cancels that check and has the node checked
// again once it ends. At most backlog nodes have a check waiting or
// under way; the hellos of others past that are left unchecked, which
// their nodes' Problem and a log line say (doc/membership.md).
type checker struct {
	d  *Daemon
	ms *members
	// backlog bounds the nodes with a check waiting or under way:
	// maxCheckBacklog, smaller in tests.
	backlog int
	// ctx ends when masterd stops, ending the checks under way, which
	// stop waits for.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards what follows. start takes it under members.mu, so it is
	// never held while calling members.
	mu      sync.Mutex
	stopped bool
	// nodes are the nodes with a check waiting or under way, by name.
	nodes map[string]*nodeCheck
	// queue are the names of the nodes whose check waits for a worker,
	// each once, in the order they came.
	queue   []string
	workers int
	// unchecked counts the hellos left unchecked since the backlog
	// filled, 0 once it drained to half.
	unchecked int
}

// nodeCheck is the check of one node.
type nodeCheck struct {
	// url and bootID are those of the node's last hello.
	url, bootID string
	// running is set while a worker calls the node; cancel ends that
	// call.
	running bool
	cancel  context.CancelFunc
	// again is set when a hello came while the node was called: the
	// worker queues the node again once the call ends.
	again bool
}

const (
	// checksAtOnce bounds the nodes called at once: a storm of joins
	// must not become a storm of connections.
	checksAtOnce = 32
	// maxCheckBacklog bounds the nodes with a check waiting or under
	// way: above the 10,000 nodes of a fleet that all say hello at once
	// (as they do to a master just started), so that each is checked;
	// a storm of hellos beyond it, from more node names than any fleet
	// has, costs masterd a few megabytes, not a goroutine each.
	maxCheckBacklog = 16384
	// checkTimeout bounds one check, retries included.
	checkTimeout = 10 * time.Second
)

func newChecker(d *Daemon, ms *members) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	return &checker{d: d, ms: ms, backlog: maxCheckBacklog, ctx: ctx, cancel: cancel, nodes: make(map[string]*nodeCheck)}
}

// stop ends the checks under way and waits for them.
func (c *checker) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// start has the node that said hello at nodeURL with bootID checked by a
// worker; it never waits, as the answer to the hello must not. It
// returns "" or, when the node is left unchecked, the problem to list
// for it.
func (c *checker) start(node, nodeURL, bootID string) (problem string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ""
	}
	if nc := c.nodes[node]; nc != nil {
		nc.url, nc.bootID = nodeURL, bootID
		if nc.running && !nc.again {
			// What the call under way finds is of an earlier hello.
			nc.again = true
			nc.cancel()
		}
		c.d.log.Debug("a hello replaces the check of the node's earlier hello", "node", node, "url", nodeURL, "boot_id", bootID)
		return ""
	}
	if len(c.nodes) >= c.backlog {
		if c.unchecked == 0 {
			c.d.log.Warn("too many nodes wait for the check of their hello: nodes that say hello now are left unchecked until their next hello",
				"waiting", len(c.nodes), "checks_at_once", checksAtOnce)
		}
		c.unchecked++
		return fmt.Sprintf("not checked: %d nodes were waiting for their check when this one said hello; it is checked at its next hello", len(c.nodes))
	}
	c.nodes[node] = &nodeCheck{url: nodeURL, bootID: bootID}
	c.queue = append(c.queue, node)
	if c.workers < checksAtOnce {
		c.workers++
		c.wg.Add(1)
		go c.work()
	}
	return ""
}

// work checks the nodes of the queue until it is empty or masterd
// stops.
func (c *checker) work() {
	defer c.wg.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) > 0 && c.ctx.Err() == nil {
		node := c.queue[0]
		c.queue[0] = ""
		c.queue = c.queue[1:]
		nc := c.nodes[node]
		ctx, cancel := context.WithCancel(c.ctx)
		nc.running, nc.cancel = true, cancel
		nodeURL, bootID := nc.url, nc.bootID
		c.mu.Unlock()
		c.check(ctx, node, nodeURL, bootID)
		cancel()
		c.mu.Lock()
		nc.running, nc.cancel = false, nil
		if nc.again {
			// To the back: a node saying hello again and again holds
			// no worker from the others.
			nc.again = false
			c.queue = append(c.queue, node)
			continue
		}
		delete(c.nodes, node)
		if c.unchecked > 0 && len(c.nodes) <= c.backlog/2 {
			c.d.log.Warn("the checks of hellos caught up; the nodes left unchecked are checked at their next hello",
				"hellos_unchecked", c.unchecked, "waiting", len(c.nodes))
			c.unchecked = 0
		}
	}
	c.workers--
}

// check runs one check and records what it found, unless ctx ended:
// masterd stops, or a later hello of the node made the check pointless,
// and either way the failure is not the node's.
func (c *checker) check(ctx context.Context, node, nodeURL, bootID string) {
	problem := c.call(ctx, nodeURL, bootID)
	if ctx.Err() != nil {
		return
	}
	if problem != "" {
		c.d.log.Warn("a node that said hello does not answer at the URL it advertised: masters cannot call it (check its --advertise)",
			"node", node, "url", nodeURL, "problem", problem)
	}
	c.ms.setReachable(node, nodeURL, bootID, problem)
}

// call returns "" if the node at nodeURL answers GET /Version with
// bootID, and otherwise what went wrong.
func (c *checker) call(ctx context.Context, nodeURL, bootID string) string {
	u, err := url.Parse(nodeURL)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("%q is not a URL", nodeURL)
	}
	opts := master.Options{Timeout: checkTimeout / 2}
	switch {
	case u.Scheme == "http" && c.d.certs == nil:
		opts.Insecure = true
	case u.Scheme == "http":
		// Refused at the hello (checkScheme); never called in the clear.
		return "masterd serves TLS and calls nodes over mutual TLS only: an http:// URL cannot be called"
	case u.Scheme == "https" && c.d.certs != nil:
		opts.TLS = c.d.certs.ClientConfig()
	case u.Scheme == "https":
		return "masterd serves plain HTTP (--insecure) and has no certificate to call an https node with"
	default:
		return fmt.Sprintf("%q: want an http:// or https:// URL", nodeURL)
	}
	client, err := master.New(u.Host, opts)
	if err != nil {
		return err.Error()
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	v, err := client.Version(ctx)
	switch {
	case err != nil:
		return err.Error()
	case v.BootID != bootID:
		return fmt.Sprintf("the node there has boot id %s, not %s of the hello: another node answers at that URL", v.BootID, bootID)
	}
	return ""
}
