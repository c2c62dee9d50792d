package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
)

// Load is the load Run puts on the nodes and how it measures the floors.
type Load struct {
	// Fn is called with Args on the nodes, which the callers take in turn.
	Fn   string
	Args json.RawMessage
	// Concurrency callers call at once (at least 1); the floors run at
	// the same concurrency.
	Concurrency int
	// Count calls are made (0: as many as Duration allows), within
	// Duration in any case; the floors run as long.
	Count    int
	Duration time.Duration
	// Rate, when above 0, paces the calls of all callers together to
	// that many per second.
	Rate float64
	// Rounds the run is cut into (at least 1, at most Count), each
	// measuring the floors and then the calls, so that all see the same
	// machine.
	Rounds int
	// Floors asks for the floors: the HTTP floor always, the spawn floor
	// when SpawnBin names the Go function process binary, the minimal
	// spawn and line floors when MinBin names the minimal floor binary
	// (noderpc-floor). FloorMax bounds the runs of each floor (it runs as
	// many as the load made calls).
	Floors   bool
	FloorMax int
	SpawnBin string
	MinBin   string
	// SpawnMissing and MinMissing say why there is no SpawnBin or
	// MinBin; the report carries them.
	SpawnMissing string
	MinMissing   string
	// Connect, when set, opens the connections before the first round
	// with one GET /Version to every node (as many as Concurrency when
	// there are fewer nodes), measured apart as the report's Connect
	// phase: the rounds then run on established connections, as the
	// calls of a master that calls its nodes more often than its
	// client's idle timeout. Without it the first request to each node
	// in the first round also sets its connection up. With the floors
	// (Floors, FloorMax above 0) and plain HTTP (TLS nil) the dial floor
	// is measured first, with as many first contacts.
	Connect bool
	// TLS is the clients' TLS configuration, nil when they speak plain
	// HTTP; the dial floor is measured only then.
	TLS *tls.Config
}

// ConnsPerNode is the connection pool a client of Run should have (its
// master.Options.MaxConns): one per caller, so that the callers do not
// queue on the pool instead of the node.
func (l Load) ConnsPerNode() int { return l.Concurrency + 1 }

// check refuses a Load that Run cannot measure; the command line checks
// its flags first, with their names.
func (l Load) check() error {
	switch {
	case !json.Valid(l.Args):
		return errors.New("bench: Args is not valid JSON")
	case l.Fn == "":
		return errors.New("bench: no Fn")
	case l.Concurrency < 1 || l.Rounds < 1 || l.Duration <= 0:
		return fmt.Errorf("bench: Concurrency %d, Rounds %d and Duration %s must be above 0", l.Concurrency, l.Rounds, l.Duration)
	}
	return nil
}

// Run calls l.Fn on the nodes of clients within the bounds of l and
// measures the floors beside, round by round. It fails only on a Load it
// cannot run; failed calls are counted in the report by kind.
func Run(ctx context.Context, clients []*master.Client, l Load) (*Report, error) {
	if len(clients) == 0 {
		return nil, errors.New("bench: no node")
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	r := &Report{Fn: l.Fn, Args: l.Args, Concurrency: l.Concurrency, Rate: l.Rate, Rounds: l.Rounds}
	for _, c := range clients {
		r.Nodes = append(r.Nodes, c.Node())
	}
	spawn, minimal := l.spawners(r)
	// The floors run at the load's pace: a paced warm call is measured
	// against an HTTP round trip and a line through an idle process at
	// the same pace.
	floor := loadSpec{concurrency: l.Concurrency, count: l.FloorMax, duration: l.Duration, rate: l.Rate}
	if l.Count > 0 {
		floor.count = min(l.Count, l.FloorMax)
	}
	floors := l.Floors && floor.count > 0
	load := loadSpec{concurrency: l.Concurrency, count: l.Count, duration: l.Duration, rate: l.Rate}
	version, call := versionOp(ctx, clients), callOp(ctx, clients, l.Fn, l.Args)
	if l.Connect {
		connect := loadSpec{concurrency: l.Concurrency, count: max(len(clients), l.Concurrency), duration: l.Duration}
		switch {
		case !floors:
		case l.TLS != nil:
			r.DialFloorMissing = "the nodes speak TLS: the dial floor makes plain connections only"
		default:
			d := &dialer{nodes: r.Nodes}
			r.DialFloor = runLoad(ctx, connect, d.run).phasePtr()
			d.close()
		}
		r.Connect = runLoad(ctx, connect, version).phasePtr()
	}
	// The phases take turns, round by round, so that a change in the
	// machine's load during the run weighs on the floors and the calls
	// alike. In each round the floors come first: a warm pool is then
	// full when the calls start.
	var httpS, spawnS, minS, lineS, runS samples
	for round := range l.Rounds {
		if floors {
			f := floor.split(round, l.Rounds)
			httpS.add(runLoad(ctx, f, version))
			if spawn != nil {
				spawnS.add(runLoad(ctx, f, spawn.run))
			}
			if minimal != nil {
				minS.add(runLoad(ctx, f, minimal.run))
				lines := newLiner(minimal, l.Concurrency+1)
				lineS.add(runLoad(ctx, f, lines.run))
				lines.close()
			}
		}
		s := runLoad(ctx, load.split(round, l.Rounds), call)
		// The releases the calls left queued are theirs: their CPU
		// counts in the calls' (a fan-out of one call per node sends
		// nearly all of them here).
		cpu0 := cpuTime()
		flushReleases(ctx, clients)
		s.cpu += cpuTime() - cpu0
		runS.add(s)
	}
	r.Run = runS.phase()
	if floors {
		r.HTTPFloor = httpS.phasePtr()
		if spawn != nil {
			r.SpawnFloor = spawnS.phasePtr()
		}
		if minimal != nil {
			r.MinSpawnFloor, r.LineFloor = minS.phasePtr(), lineS.phasePtr()
		}
	}
	r.ratios()
	return r, nil
}

// spawners returns the spawners of the floors l asks for and has a
// binary for, and notes in r which binaries they run or why not.
func (l Load) spawners(r *Report) (spawn, minimal *spawner) {
	if !l.Floors {
		return nil, nil
	}
	if l.SpawnBin != "" {
		r.SpawnFloorBin = l.SpawnBin
		spawn = newSpawner(l.SpawnBin, l.Fn, l.Args)
	} else {
		r.SpawnFloorMissing = l.SpawnMissing
	}
	if l.MinBin != "" {
		r.MinFloorBin = l.MinBin
		minimal = newSpawner(l.MinBin, l.Fn, l.Args)
	} else {
		r.MinFloorMissing = l.MinMissing
	}
	return spawn, minimal
}

// versionOp is the HTTP floor: a bare Version round trip.
func versionOp(ctx context.Context, clients []*master.Client) op {
	return func(i int) (time.Duration, error) {
		start := time.Now()
		_, err := clients[i%len(clients)].Version(ctx)
		return time.Since(start), err
	}
}

// callOp is one call of the load, from start to result, made as a
// master makes it: its release waits in the client and rides on the
// client's next start to the node, so it costs no request of its own.
func callOp(ctx context.Context, clients []*master.Client, fn string, args json.RawMessage) op {
	return func(i int) (time.Duration, error) {
		start := time.Now()
		_, err := clients[i%len(clients)].Call(ctx, fn, args, master.CallOptions{})
		return time.Since(start), err
	}
}

// flushReleases sends the releases the calls of a phase left queued in
// the clients, so that they are not sent during the next phase, and the
// nodes hold no call once the run is over.
func flushReleases(ctx context.Context, clients []*master.Client) {
	for _, c := range clients {
		// A failure is logged by the client; the node drops the call
		// after its retention period.
		c.FlushReleases(context.WithoutCancel(ctx))
	}
}
