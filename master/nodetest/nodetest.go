// Package nodetest is the one harness for tests that run real noded
// processes: the daemon's own integration, operations and fault tests,
// the master client's, the noderpc CLI's, and a master daemon's.
//
// A test package routes its TestMain through [Main] (or [Run]); binaries
// are then built on first use, once per test binary, into a directory
// removed when the tests end, and with -race when the tests run with it
// (see race.go), so that go test -race checks the daemon's own code as
// well as the test's. Each test starts the nodes it needs with [Start]:
// a node listens on a free loopback port and lives as long as the test.
// Its cleanup stops it and fails the test if any process it started,
// grandchildren that left its process group included, is still running:
// every node carries a marker of its own in its environment, which noded
// hands down to every function process and they to theirs.
//
// The package also reads what a test checks of a node from outside: its
// /metrics ([Node.Metrics]), its memory ([Node.VmHWM]), the PIDs its
// script functions recorded ([Node.RecordedPIDs]), its log, and the
// process table ([ProcessesWithEnv], [Running]).
package nodetest

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// MarkerKey is the environment variable that carries a node's marker.
const MarkerKey = "NODETEST_MARKER"

// startTimeout bounds how long a node may take to start listening.
const startTimeout = 30 * time.Second

// defaultGrace is noded's --shutdown-grace when none is given
// (jobs.DefaultGrace; a test of this package holds them equal).
const defaultGrace = 10 * time.Second

// TLS names the files a node serves HTTPS with: its --cert, --key and
// --client-ca.
type TLS struct {
	Cert, Key, ClientCA string
}

// Options say how to run a node. The zero value runs noded with
// --insecure on 127.0.0.1:0, no configuration file and an empty
// functions directory.
type Options struct {
	// Binary is the daemon to run; empty means noded, from [Noded] (or
	// [BinaryNoRace] with NoRace).
	Binary string
	// NoRace runs noded built without the race detector even when the
	// tests run with it, for a test that measures noded's memory.
	NoRace bool
	// Flags are more command-line flags, given after the harness's own
	// (--config=, --insecure or the TLS files, --listen, --addr-file,
	// --functions-dir), so that the last of a repeated flag wins.
	Flags []string
	// Functions are executable functions, by name: shell scripts
	// installed with mode 0755 in the node's functions directory. A
	// script without a "#!" line runs with /bin/sh. Every "@STATE@" in
	// a script is replaced by [Node.State].
	Functions map[string]string
	// FunctionsFrom is a directory (e.g. "testdata/functions") whose
	// files are installed as Functions are.
	FunctionsFrom string
	// Env are "KEY=value" entries added to the test's environment.
	Env []string
	// TLS, when set, serves HTTPS with these files instead of plain
	// HTTP with --insecure.
	TLS *TLS
	// Listen is the address of the first start; empty means
	// 127.0.0.1:0. Restarts keep the address first served on.
	Listen string
	// KeepLogsIn, when set, is a directory each incarnation's log is
	// copied into as MARKER-noded-PID.log when the node is closed,
	// whatever the outcome.
	KeepLogsIn string
}

// Node is one noded of a test, restartable on the same address. Its
// incarnations (one per start) share its marker, its functions and
// state directories, and its address.
type Node struct {
	*daemon // its files: functions/, state/, addr, logs
	opts    Options
}

// Start starts a node for the test t with opts, waits until it listens
// and returns it. The test's cleanup closes it (see [Node.Close]) and
// fails the test on any problem; when the test failed, it logs the tail
// of noded's log and keeps the node's files, whose directory it names.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	opts = withBinary(t, opts)
	n, err := launch(Sanitize(t.Name()), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.closeFor(t, true) })
	return n
}

// StartMany starts count nodes with opts at once, for a test of many
// nodes, and returns them once all listen. Its cleanup closes them at
// once too, where one [Start] after the other would stop them one after
// the other; when the test failed, it logs the tail of the logs of the
// nodes whose close went wrong, and keeps the files of all.
func StartMany(t testing.TB, count int, opts Options) []*Node {
	t.Helper()
	each := make([]Options, count)
	for i := range each {
		each[i] = opts
	}
	return StartEach(t, each)
}

// StartEach is [StartMany] for nodes that differ: it starts one node for
// each of opts at once (a fleet whose nodes each have a name and a
// certificate of their own, say), and returns them in the same order.
func StartEach(t testing.TB, opts []Options) []*Node {
	t.Helper()
	opts = append([]Options(nil), opts...) // the caller's slice stays as given
	for i := range opts {
		opts[i] = withBinary(t, opts[i])
	}
	nodes := make([]*Node, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = launch(Sanitize(t.Name()), opts[i]) })
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil {
				wg.Go(func() { n.closeFor(t, false) })
			}
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// withBinary fills in opts.Binary with noded, built as opts ask.
func withBinary(t testing.TB, opts Options) Options {
	t.Helper()
	switch {
	case opts.Binary != "":
	case opts.NoRace:
		opts.Binary = nodedOrFail(t, false)
	default:
		opts.Binary = Noded(t)
	}
	return opts
}

// Launch starts a node with opts outside any test, for code that manages
// its life itself (an example, a TestMain): the caller closes it with
// [Node.Close]; [Run] closes those still open when the tests end.
func Launch(opts Options) (*Node, error) {
	if opts.Binary == "" {
		path, _, err := nodedBinary(raceBuild && !opts.NoRace)
		if err != nil {
			return nil, err
		}
		opts.Binary = path
	}
	n, err := launch("launch", opts)
	if err != nil {
		return nil, err
	}
	buildMu.Lock()
	launched[n] = true
	buildMu.Unlock()
	return n, nil
}

// launch makes the node's directories, installs its functions and
// starts its first incarnation.
func launch(name string, opts Options) (*Node, error) {
	d, err := newDaemon("noded", opts.Binary, "nodetest-"+clip(name, 60)+"-",
		MarkerKey+"="+clip(name, 60)+"-"+RandomHex(8), graceOf(opts.Flags)+30*time.Second)
	if err != nil {
		return nil, err
	}
	d.keepLogsIn = opts.KeepLogsIn
	n := &Node{daemon: d, opts: opts}
	if err := n.install(); err != nil {
		os.RemoveAll(d.dir)
		return nil, err
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if err := n.start(listen); err != nil {
		err = errors.Join(err, n.checkLeftovers())
		os.RemoveAll(d.dir)
		return nil, err
	}
	return n, nil
}

// graceOf returns the --shutdown-grace of flags, or noded's default: a
// node is given that much and a margin to stop before it is killed.
func graceOf(flags []string) time.Duration {
	grace := defaultGrace
	for i, f := range flags {
		v, ok := strings.CutPrefix(f, "--shutdown-grace=")
		if !ok && f == "--shutdown-grace" && i+1 < len(flags) {
			v, ok = flags[i+1], true
		}
		if d, err := time.ParseDuration(v); ok && err == nil {
			grace = d
		}
	}
	return grace
}

// start runs a new incarnation on listen and waits until it listens.
func (n *Node) start(listen string) error {
	return n.listen(n.args(listen), append(environ(), n.opts.Env...))
}

// args are the command line of an incarnation.
func (n *Node) args(listen string) []string {
	args := append(n.serveArgs(n.opts.TLS, listen), "--functions-dir", n.FunctionsDir())
	return append(args, n.opts.Flags...)
}

// Addr returns the host:port the node serves on, the same for every
// incarnation.
func (n *Node) Addr() string { return n.address() }

// URL returns the base URL of the node: http://ADDR, or https://ADDR
// when it serves TLS.
func (n *Node) URL() string { return n.url(n.opts.TLS) }

// PID returns the process ID of the latest incarnation.
func (n *Node) PID() int { return n.pid() }

// PIDs returns the process IDs of every incarnation, oldest first.
func (n *Node) PIDs() []int { return n.pids() }

// Binary returns the path of the daemon the node runs.
func (n *Node) Binary() string { return n.bin }

// Options returns the options the node was started with.
func (n *Node) Options() Options { return n.opts }

// Marker returns the environment entry, MarkerKey=value, that every
// process of the node carries.
func (n *Node) Marker() string { return n.marker }

// Processes lists the running processes that carry the node's marker:
// its noded, if running, and everything noded started that still runs.
func (n *Node) Processes() []int { return ProcessesWithEnv(n.marker) }

// Running reports whether the latest incarnation is still running.
func (n *Node) Running() bool { return n.running() }
