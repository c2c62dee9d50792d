package tools

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// benchCommand is `noderpc bench`: a load generator that measures calls
// beside their floors, taken in the same run on the same machine.
var benchCommand = &command{
	name:    "bench",
	args:    "NODE...",
	summary: "load nodes with calls and compare them to the spawn and HTTP floors",
	about: `
Runs --fn with --args on the nodes from --concurrency callers at once, for
--count calls or for --duration, whichever ends first, each caller taking
the nodes in turn. Reports throughput, latency percentiles (start to
result), client CPU per call and errors by kind, and beside them the
floors, measured in the same run at the same concurrency:

  spawn floor: a bare spawn and wait of the Go function process binary
      (noded's, from --spawn-floor-bin, or found next to noderpc or in
      PATH) fed the same request, without noded, HTTP or the job table;
  http floor:  a bare GET /Version round trip to the same nodes.

The run is cut into --rounds rounds; each measures the floors, then the
calls, so that a machine whose load changes during the run weighs on
floors and calls alike. Each latency is printed as a ratio to the sum of
the floors at the same percentile, and the throughput as a ratio to the
spawn floor's. A call's release is sent after its latency is taken, by
the same caller, so it counts in the throughput but not in the latency.

Whether calls run warm is the node's choice (noded --warm N). To measure
warm calls, give --rounds 1 (a pool refilling after a round would slow
the next round's floors) and fewer calls than the pool holds, or --rate
slow enough for the pool to keep up.

With --scale it measures a node's memory instead: it starts --running
sleep calls of --sleep, opens --waits WaitForFunction requests on them
(spread evenly), and reports the node's resident memory (VmRSS of its own
process, not of its children) per running call and per open wait, read
from /proc: the node must run on this machine.

Examples:
  noderpc --insecure bench --count 500 127.0.0.1:1811
  noderpc --insecure bench --concurrency 8 --duration 10s 127.0.0.1:1811
  noderpc --insecure bench --rounds 1 --count 200 --fn echo --args '"x"' 127.0.0.1:1811
  noderpc --insecure --json bench --count 100 10.0.0.1:1811 10.0.0.2:1811
  noderpc --insecure --socket-timeout 3m --unreachable-after 3m bench --scale --running 2000 --waits 10000 --sleep 60s --concurrency 32 127.0.0.1:1811
`,
	setup: func(fs *flag.FlagSet) runFunc {
		var o benchOptions
		fs.StringVar(&o.fn, "fn", "echo", "function to call")
		args := fs.String("args", `{"bench":"echo","n":[1,2,3]}`, "the function's arguments, as JSON")
		fs.IntVar(&o.concurrency, "concurrency", 1, "callers at once (and the concurrency of the floors)")
		fs.DurationVar(&o.duration, "duration", 10*time.Second, "longest run of the load and of each floor")
		fs.IntVar(&o.count, "count", 0, "calls to make (0: as many as --duration allows)")
		fs.Float64Var(&o.rate, "rate", 0, "calls per second, all callers together (0: as fast as they answer)")
		fs.IntVar(&o.rounds, "rounds", 5, "rounds the run is cut into, each measuring the floors and then the calls, so that all see the same machine")
		fs.BoolVar(&o.floors, "floors", true, "measure the floors (--floors=false skips them)")
		fs.IntVar(&o.floorMax, "floor-count", 2000, "most runs of each floor (it runs as many as the load made calls, up to this)")
		fs.StringVar(&o.spawnBin, "spawn-floor-bin", "", "Go function process binary of the spawn floor (default: noded next to noderpc, or in PATH)")
		fs.BoolVar(&o.scale.on, "scale", false, "measure the node's memory per running call and per open wait instead")
		fs.IntVar(&o.scale.running, "running", 2000, "with --scale: sleep calls running at once")
		fs.IntVar(&o.scale.waits, "waits", 10000, "with --scale: WaitForFunction requests open at once")
		fs.DurationVar(&o.scale.sleep, "sleep", time.Minute, "with --scale: how long each sleep call runs; it must outlast starting them all and opening the waits")
		return func(a *app, ctx context.Context, nodes []string) int {
			if o.count > 0 && !isSet(fs, "duration") {
				// A count decides the length; the duration only bounds it.
				o.duration = maxCountedRun
			}
			o.args = json.RawMessage(*args)
			return a.bench(ctx, nodes, o)
		}
	},
}

// maxCountedRun bounds a --count run whose --duration was not given.
const maxCountedRun = 10 * time.Minute

// benchOptions are the flags of bench.
type benchOptions struct {
	fn          string
	args        json.RawMessage
	concurrency int
	duration    time.Duration
	count       int
	rate        float64
	rounds      int
	floors      bool
	floorMax    int
	spawnBin    string
	scale       scaleOptions
}

// check reports a usage error in o.
func (o *benchOptions) check() error {
	switch {
	case !json.Valid(o.args):
		return fmt.Errorf("--args is not valid JSON: %q", clip(string(o.args), 80))
	case o.fn == "":
		return errors.New("--fn must name a function")
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, got %d", o.concurrency)
	case o.duration <= 0:
		return fmt.Errorf("--duration must be above 0, got %s", o.duration)
	case o.count < 0 || o.floorMax < 0:
		return errors.New("--count and --floor-count must not be negative")
	case o.rounds < 1 || (o.count > 0 && o.rounds > o.count):
		return fmt.Errorf("--rounds must be between 1 and --count, got %d", o.rounds)
	case o.rate < 0:
		return fmt.Errorf("--rate must not be negative, got %v", o.rate)
	}
	return o.scale.check()
}

func (a *app) bench(ctx context.Context, nodes []string, o benchOptions) int {
	if len(nodes) == 0 {
		return a.commandUsageError("no NODE (host:port) given")
	}
	for _, n := range nodes {
		if !isNode(n) {
			return a.commandUsageError("%q is not a NODE (host:port)", n)
		}
	}
	if err := o.check(); err != nil {
		return a.commandUsageError("%v", err)
	}
	if o.scale.on {
		return a.benchScale(ctx, nodes, o)
	}
	opts := a.options()
	// One connection per caller to each node: the pool must not be what
	// the callers queue on.
	opts.MaxConns = o.concurrency + 1
	clients, err := a.clients(nodes, opts)
	if err != nil {
		return a.commandUsageError("%v", err)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	r := benchReport{Nodes: nodes, Fn: o.fn, Args: o.args, Concurrency: o.concurrency, Rate: o.rate, Rounds: o.rounds}
	version := func(i int) (time.Duration, error) {
		start := time.Now()
		_, err := clients[i%len(clients)].Version(ctx)
		return time.Since(start), err
	}
	callOpts := master.CallOptions{Keep: true}
	call := func(i int) (time.Duration, error) {
		c := clients[i%len(clients)]
		start := time.Now()
		rec, err := c.Call(ctx, o.fn, o.args, callOpts)
		took := time.Since(start)
		if rec != nil && rec.Finished {
			// Outside the latency: a master reads the result before
			// it releases the call.
			c.ReleaseFunction(context.WithoutCancel(ctx), rec.ID)
		}
		return took, err
	}
	var spawn *spawner
	if o.floors {
		if bin, err := spawnFloorBin(o.spawnBin); err != nil {
			r.SpawnFloorMissing = err.Error()
		} else {
			r.SpawnFloorBin = bin
			spawn = newSpawner(bin, o.fn, o.args)
		}
	}
	floor := loadSpec{concurrency: o.concurrency, count: o.floorMax, duration: o.duration}
	if o.count > 0 {
		floor.count = min(o.count, o.floorMax)
	}
	load := loadSpec{concurrency: o.concurrency, count: o.count, duration: o.duration, rate: o.rate}
	// The phases take turns, round by round, so that a change in the
	// machine's load during the run weighs on the floors and the calls
	// alike. In each round the floors come first: a warm pool is then
	// full when the calls start.
	var httpS, spawnS, runS samples
	for round := range o.rounds {
		if o.floors && floor.count > 0 {
			httpS.add(runLoad(ctx, floor.split(round, o.rounds), version))
			if spawn != nil {
				spawnS.add(runLoad(ctx, floor.split(round, o.rounds), spawn.run))
			}
		}
		runS.add(runLoad(ctx, load.split(round, o.rounds), call))
	}
	r.Run = runS.phase()
	if o.floors && floor.count > 0 {
		h := httpS.phase()
		r.HTTPFloor = &h
		if spawn != nil {
			p := spawnS.phase()
			r.SpawnFloor = &p
		}
	}
	r.ratios()
	if a.json {
		a.emitJSON(r)
	} else {
		r.print(a.stdout)
	}
	if r.Run.Calls == 0 || r.Run.Calls != r.Run.Successes {
		return ExitFailed
	}
	return ExitOK
}

// spawnFloorBin finds the function process binary of the spawn floor: the
// one given, else noded beside the running noderpc, else noded in PATH.
func spawnFloorBin(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("--spawn-floor-bin: %v", err)
		}
		return given, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "noded")
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
			return beside, nil
		}
	}
	bin, err := exec.LookPath("noded")
	if err != nil {
		return "", errors.New("no noded beside noderpc or in PATH; give --spawn-floor-bin")
	}
	return bin, nil
}

// errorKind names the kind of a failed call in the report: its rpc kind
// (unreachable included), "interrupted" when the run was stopped, or
// "other".
func errorKind(err error) string {
	if k := rpc.KindOf(err); k != "" {
		return string(k)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "interrupted"
	}
	return "other"
}

// nodeList shortens a long list of nodes for a heading.
func nodeList(nodes []string) string {
	if len(nodes) <= 3 {
		return strings.Join(nodes, " ")
	}
	return fmt.Sprintf("%s ... %s (%d nodes)", nodes[0], nodes[len(nodes)-1], len(nodes))
}
