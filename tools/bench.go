package tools

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools/bench"
)

// benchCommand is `noderpc bench`: a load generator that measures calls
// beside their floors, taken in the same run on the same machine.
var benchCommand = &command{
	name:     "bench",
	args:     "NODE... | sessions [flags]",
	summary:  "load nodes with calls and compare them to the spawn and HTTP floors, or masterd with sessions",
	ownFlags: func(args []string) bool { return len(args) > 0 && args[0] == "sessions" },
	about: `
Runs --fn with --args on the nodes from --concurrency callers at once, for
--count calls or for --duration, whichever ends first, each caller taking
the nodes in turn. Reports throughput, latency percentiles (start to
result), client CPU per call and errors by kind, and beside them the
floors, measured in the same run at the same concurrency:

  min spawn floor: a spawn and wait of a minimal Go process (noderpc-floor,
      from --min-floor-bin, or found next to noderpc or in PATH: it only
      writes a line, reads one and writes one), fed the same request;
  line floor:  one request line into such a process already started,
      greeted and idle, and its first line back: what a warm call's
      process cannot go below;
  spawn floor: the same spawn of the Go function process binary
      (noded-fn or noded, from --spawn-floor-bin, or found next to
      noderpc or in PATH), without noded, HTTP or the job table;
  http floor:  a bare GET /Version round trip to the same nodes.

The run is cut into --rounds rounds; each measures the floors, then the
calls, so that a machine whose load changes during the run weighs on
floors and calls alike; with --rate the floors are paced as the calls
are. Each latency is printed as a ratio to the cold floor (min spawn
floor + http floor, or the spawn floor without noderpc-floor) and to the
warm floor (line floor + http floor) at the same percentile, and the
throughput as a ratio to the min spawn floor's. Calls are made as a
master makes them: a call's release waits in the client and rides on the
next start to the node, in the same request, so it costs no request of
its own; what the last calls of a round leave queued is sent after the
round, outside its latencies and throughput, its CPU counted in the
client CPU per call.

No connection is opened beforehand: the first request to each node sets
its connection up, and with many nodes and one call each (a fan-out)
the first round's http floor is a first contact with every node. With
--connect one GET /Version to every node opens the connections first,
reported apart, and every round runs on established connections, as
the calls of a master that calls its nodes more often than its idle
timeout (10 s). Its floor, measured just before it with as many first
contacts (plain HTTP only):

  dial floor:  a bare TCP connection to the node and one GET /Version
      on it, written by hand, without the client; its connections stay
      open until the floor ends, as the client's do.

Whether calls run warm is the node's choice (noded --warm N). To measure
warm calls, give --rounds 1 (a pool refilling after a round would slow
the next round's floors) and fewer calls than the pool holds, or --rate
slow enough for the pool to keep up.

With --scale it measures a node's memory instead: it starts --running
sleep calls of --sleep, opens --waits WaitForFunction requests on them
(spread evenly), and reports the node's resident memory (VmRSS of its own
process, not of its children) per running call and per open wait, read
from /proc: the node must run on this machine.

bench sessions loads masterd instead: it simulates a fleet of --sessions
nodes from this one process (named bench-00001 and on, one connection
each), which say hello and renew their sessions, and reports the
sessions established, the hello rate, renewals per second over
--duration, errors by kind, and masterd's memory and CPU per renewal read
from /proc (masterd must run on this machine: found from its port, or
--masterd-pid). With --expire it then closes every connection at once
and measures the time until masterd lists all of them down. It speaks
plain HTTP: run masterd with --insecure, which takes a hello of any node
name, and give noderpc --insecure. It raises its open-files limit to the
hard limit, which must exceed --sessions.

Examples:
  noderpc --insecure bench --count 500 127.0.0.1:1811
  noderpc --insecure bench --concurrency 8 --duration 10s 127.0.0.1:1811
  noderpc --insecure bench --rounds 1 --count 200 --fn echo --args '"x"' 127.0.0.1:1811
  noderpc --insecure --json bench --count 100 10.0.0.1:1811 10.0.0.2:1811
  noderpc --insecure --socket-timeout 3m --unreachable-after 3m bench --scale --running 2000 --waits 10000 --sleep 60s --concurrency 32 127.0.0.1:1811
  noderpc --insecure bench sessions --master http://127.0.0.1:1812 --sessions 10000 --duration 20s --expire
`,
	setup: func(fs *flag.FlagSet) runFunc {
		var o benchOptions
		l, sc := &o.load, &o.scale
		fs.StringVar(&l.Fn, "fn", "echo", "function to call")
		args := fs.String("args", `{"bench":"echo","n":[1,2,3]}`, "the function's arguments, as JSON")
		fs.IntVar(&l.Concurrency, "concurrency", 1, "callers at once (and the concurrency of the floors)")
		fs.DurationVar(&l.Duration, "duration", 10*time.Second, "longest run of the load and of each floor")
		fs.IntVar(&l.Count, "count", 0, "calls to make (0: as many as --duration allows)")
		fs.Float64Var(&l.Rate, "rate", 0, "calls per second, all callers together (0: as fast as they answer)")
		fs.IntVar(&l.Rounds, "rounds", 5, "rounds the run is cut into, each measuring the floors and then the calls, so that all see the same machine")
		fs.BoolVar(&l.Floors, "floors", true, "measure the floors (--floors=false skips them)")
		fs.BoolVar(&l.Connect, "connect", false, "open a connection to every node before the first round (one GET /Version each, reported apart, beside the dial floor), so that the rounds run on established connections")
		fs.IntVar(&l.FloorMax, "floor-count", 2000, "most runs of each floor (it runs as many as the load made calls, up to this)")
		fs.StringVar(&o.spawnBin, "spawn-floor-bin", "", "Go function process binary of the spawn floor (default: noded-fn, else noded, next to noderpc or in PATH)")
		fs.StringVar(&o.minBin, "min-floor-bin", "", "minimal Go process of the min spawn and line floors (default: noderpc-floor next to noderpc, or in PATH)")
		fs.BoolVar(&o.scaleOn, "scale", false, "measure the node's memory per running call and per open wait instead")
		fs.IntVar(&sc.Running, "running", 2000, "with --scale: sleep calls running at once")
		fs.IntVar(&sc.Waits, "waits", 10000, "with --scale: WaitForFunction requests open at once")
		fs.DurationVar(&sc.Sleep, "sleep", time.Minute, "with --scale: how long each sleep call runs; it must outlast starting them all and opening the waits")
		return func(a *app, ctx context.Context, nodes []string) int {
			if len(nodes) > 0 && nodes[0] == "sessions" {
				var given []string
				fs.Visit(func(f *flag.Flag) { given = append(given, "--"+f.Name) })
				if len(given) > 0 {
					return a.commandUsageError("%s: bench sessions takes its flags after sessions", strings.Join(given, ", "))
				}
				return a.benchSessions(ctx, nodes[1:])
			}
			if l.Count > 0 && !isSet(fs, "duration") {
				// A count decides the length; the duration only bounds it.
				l.Duration = maxCountedRun
			}
			l.Args = json.RawMessage(*args)
			return a.bench(ctx, nodes, o)
		}
	},
}

// maxCountedRun bounds a --count run whose --duration was not given.
const maxCountedRun = 10 * time.Minute

// benchOptions are the flags of bench.
type benchOptions struct {
	load     bench.Load
	spawnBin string // --spawn-floor-bin, as given
	minBin   string // --min-floor-bin, as given
	scaleOn  bool
	scale    bench.Scale
}

// check reports a usage error in o.
func (o *benchOptions) check() error {
	l := &o.load
	switch {
	case rpc.CheckJSON(l.Args) != nil:
		return fmt.Errorf("--args is not valid JSON: %v", rpc.CheckJSON(l.Args))
	case l.Fn == "":
		return errors.New("--fn must name a function")
	case l.Concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, got %d", l.Concurrency)
	case l.Duration <= 0:
		return fmt.Errorf("--duration must be above 0, got %s", l.Duration)
	case l.Count < 0 || l.FloorMax < 0:
		return errors.New("--count and --floor-count must not be negative")
	case l.Rounds < 1 || (l.Count > 0 && l.Rounds > l.Count):
		return fmt.Errorf("--rounds must be between 1 and --count, got %d", l.Rounds)
	case l.Rate < 0:
		return fmt.Errorf("--rate must not be negative, got %v", l.Rate)
	case !o.scaleOn:
		return nil
	case o.scale.Running < 1:
		return fmt.Errorf("--running must be at least 1, got %d", o.scale.Running)
	case o.scale.Waits < 0:
		return fmt.Errorf("--waits must not be negative, got %d", o.scale.Waits)
	case o.scale.Sleep <= 0:
		return fmt.Errorf("--sleep must be above 0, got %s", o.scale.Sleep)
	}
	return nil
}

func (a *app) bench(ctx context.Context, nodes []string, o benchOptions) int {
	if err := checkNodes(nodes); err != nil {
		return a.commandUsageError("%v", err)
	}
	if err := o.check(); err != nil {
		return a.commandUsageError("%v", err)
	}
	if o.scaleOn {
		return a.benchScale(ctx, nodes, o)
	}
	opts := a.options()
	opts.MaxConns = o.load.ConnsPerNode()
	o.load.TLS = opts.TLS
	clients, err := a.clients(nodes, opts)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	defer closeAll(clients)
	if o.load.Floors {
		o.load.SpawnBin, o.load.SpawnMissing = floorBin(o.spawnBin, "--spawn-floor-bin", "noded-fn", "noded")
		o.load.MinBin, o.load.MinMissing = floorBin(o.minBin, "--min-floor-bin", "noderpc-floor")
	}
	r, err := bench.Run(ctx, clients, o.load)
	if err != nil {
		// The flags were checked: a Load refused is a bug here.
		fmt.Fprintf(a.stderr, "noderpc bench: %v\n", err)
		return ExitFailed
	}
	return a.benchReport(r)
}

// benchScale runs bench --scale against the one node in nodes, which
// must be on this machine.
func (a *app) benchScale(ctx context.Context, nodes []string, o benchOptions) int {
	if len(nodes) != 1 {
		return a.commandUsageError("--scale measures one node, got %d", len(nodes))
	}
	node := nodes[0]
	host, _, _ := net.SplitHostPort(node)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return a.commandUsageError("--scale reads the node's memory from /proc: NODE must be a loopback address, got %s", node)
	}
	s := o.scale
	s.Concurrency, s.SocketTimeout, s.TLS = o.load.Concurrency, a.socketTimeout, a.tls
	opts := a.options()
	opts.MaxConns = s.ConnsPerNode()
	clients, err := a.clients(nodes, opts)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	c := clients[0]
	defer c.Close()
	r, err := bench.MeasureScale(ctx, c, s)
	switch {
	case errors.Is(err, bench.ErrNotLocal):
		fmt.Fprintf(a.stderr, "noderpc bench: %v\n", err)
		return ExitFailed
	case err != nil:
		fmt.Fprintln(a.stderr, err)
		return statusOf(err)
	}
	return a.benchReport(r)
}

// floorBin finds the binary of a floor: the one given with flag, else
// the first of names beside the running noderpc, else in PATH. When
// there is none it returns why instead, for the report.
func floorBin(given, flag string, names ...string) (bin, missing string) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Sprintf("%s: %v", flag, err)
		}
		return given, ""
	}
	self, selfErr := os.Executable()
	for _, name := range names {
		if selfErr == nil {
			beside := filepath.Join(filepath.Dir(self), name)
			if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
				return beside, ""
			}
		}
		if bin, err := exec.LookPath(name); err == nil {
			return bin, ""
		}
	}
	return "", fmt.Sprintf("no %s beside noderpc or in PATH; give %s", strings.Join(names, " or "), flag)
}

// benchReport prints a report of bench, as JSON with --json, and returns
// the exit status it makes.
func (a *app) benchReport(r interface {
	Print(io.Writer)
	OK() bool
}) int {
	if a.json {
		a.emitJSON(r)
	} else {
		r.Print(a.stdout)
	}
	if !r.OK() {
		return ExitFailed
	}
	return ExitOK
}

// benchSessions runs bench sessions with its arguments, the flags after
// "sessions".
func (a *app) benchSessions(ctx context.Context, args []string) int {
	s := bench.Sessions{Prefix: "bench-"}
	fs := flag.NewFlagSet("noderpc bench sessions", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var masters masterURLs
	fs.Var(&masters, "master", "masterd `URL` (http://host:port; default the global --master)")
	fs.IntVar(&s.Count, "sessions", 1000, "sessions to hold at once")
	fs.DurationVar(&s.Duration, "duration", 10*time.Second, "how long the fleet renews once established (the measuring window)")
	fs.DurationVar(&s.Hold, "hold", 0, "hold each renewal of the window asks for (0: back to back, answered at once)")
	fs.IntVar(&s.HelloConcurrency, "hello-concurrency", 256, "most hellos in flight at once while the fleet joins")
	fs.IntVar(&s.Sources, "sources", 32, "loopback source addresses (127.0.0.1 and on) to spread the connections over")
	fs.StringVar(&s.Prefix, "prefix", s.Prefix, "node name prefix, followed by a five-digit number")
	fs.BoolVar(&s.Expire, "expire", false, "at the end, close every connection at once and measure the time until masterd lists the fleet down")
	fs.DurationVar(&s.Poll, "poll", 250*time.Millisecond, "with --expire: how often to ask masterd for its nodes")
	fs.IntVar(&s.MasterdPID, "masterd-pid", 0, "masterd's process, to read its memory and CPU (default: found from its port)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.cmd.printHelp(a.stdout, fs)
			return ExitOK
		}
		return a.commandUsageError("%s", flagError(fs, err))
	}
	if fs.NArg() > 0 {
		return a.commandUsageError("bench sessions takes no arguments, got %q", fs.Args())
	}
	if !a.insecure {
		return a.commandUsageError("bench sessions speaks plain HTTP to a masterd run with --insecure: give noderpc --insecure")
	}
	if len(masters) == 0 {
		urls, err := a.masterURLs()
		if err != nil {
			return a.commandUsageError("bench sessions: %v", err)
		}
		masters = urls
	}
	if len(masters) != 1 {
		return a.commandUsageError("bench sessions loads one masterd, got %d: %q", len(masters), []string(masters))
	}
	u, err := url.Parse(masters[0])
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return a.commandUsageError("bench sessions: --master %q: want http://host:port (masterd --insecure)", masters[0])
	}
	s.Master, s.SocketTimeout = u.Host, a.socketTimeout
	if err := s.Check(); err != nil {
		return a.commandUsageError("%v", err)
	}
	r, err := bench.MeasureSessions(ctx, s)
	if err != nil {
		fmt.Fprintf(a.stderr, "noderpc %v\n", err)
		return ExitFailed
	}
	return a.benchReport(r)
}
