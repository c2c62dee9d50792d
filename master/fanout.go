package master

import (
	"context"
	"fmt"
	"sync"

	"github.com/noderpc/noderpc/rpc"
)

// Result is the outcome of one node's call in [CallEach] and
// [CallEachStream].
type Result struct {
	// Node is the node's host:port.
	Node string
	// Call is the last call record received, nil if the call never
	// started (offline, unreachable at start, refused).
	Call *rpc.Call
	// Err is nil if the function succeeded on the node, else the error
	// [Client.Call] would have returned.
	Err error
}

// DefaultConcurrency is the concurrency a fan-out gets when asked for 0.
const DefaultConcurrency = 64

// CallEach runs fn with args on every node of clients at once, at most
// concurrency calls in flight (0 means DefaultConcurrency), and returns
// one Result per client, in the order of clients, once every call has
// ended. A node's failure is its own Result's error; it never fails the
// others. Nodes marked offline get an error matching [ErrOffline]
// without any network traffic, and take no slot of the concurrency
// bound. opts applies to every call; opts.OnLog is called by one call at
// a time.
//
// CallEach waits for the slowest node and holds every Result until then;
// [CallEachStream], which it is built on, hands each one over as it
// lands.
func CallEach(ctx context.Context, clients []*Client, fn string, args any, concurrency int, opts CallOptions) []Result {
	results := make([]Result, len(clients))
	CallEachStream(ctx, clients, fn, args, concurrency, opts, func(i int, r Result) { results[i] = r })
	return results
}

// CallEachStream runs fn with args on every node of clients as
// [CallEach] does, but calls deliver with each node's Result as soon as
// that node's call has ended, so that a slow or silent node holds back
// its own Result only. i is the node's index in clients.
//
// deliver is called on the goroutine that called CallEachStream, one
// Result at a time, in the order the calls end (an offline node's when
// its turn to start comes), exactly once per client; CallEachStream
// returns after the last. deliver and opts.OnLog are never called at
// the same time, and a node's log lines all reach OnLog before its
// Result reaches deliver. A worker waits for deliver to return before it
// starts its next node, so a slow deliver slows the fan-out down instead
// of piling Results up: at most concurrency calls and Results are alive
// at once, and a deliver that keeps no Result leaves the memory of the
// fan-out bounded by concurrency answers of at most Options.MaxAnswer,
// however many the nodes.
func CallEachStream(ctx context.Context, clients []*Client, fn string, args any, concurrency int, opts CallOptions, deliver func(i int, r Result)) {
	raw, err := encodeArgs(args)
	if err != nil {
		for i, c := range clients {
			deliver(i, Result{Node: c.node, Err: fmt.Errorf("%s: %w", c.node, err)})
		}
		return
	}
	// One lock for OnLog and deliver: a caller that prints both never
	// interleaves them.
	var mu sync.Mutex
	if opts.OnLog != nil {
		onLog := opts.OnLog
		opts.OnLog = func(l LogLine) {
			mu.Lock()
			defer mu.Unlock()
			onLog(l)
		}
	}
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	// A deliver that panics ends the fan-out: the calls still running
	// are cancelled, and what they land is drained in the background so
	// that no worker stays blocked on a Result no one takes.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type landed struct {
		i   int
		r   Result
		ack chan<- struct{} // the worker waiting for deliver; nil if none
	}
	done := make(chan landed)
	// A fixed pool of workers, not a goroutine per node: a fan-out to a
	// thousand nodes holds at most concurrency goroutines, and at most
	// concurrency answers in flight (each within Options.MaxAnswer).
	todo := make(chan int)
	var wg sync.WaitGroup
	for range min(concurrency, len(clients)) {
		wg.Go(func() {
			ack := make(chan struct{})
			for i := range todo {
				c := clients[i]
				rec, err := c.call(ctx, fn, raw, opts)
				done <- landed{i, Result{Node: c.node, Call: rec, Err: err}, ack}
				<-ack
			}
		})
	}
	go func() {
		for i, c := range clients {
			if c.Offline() {
				done <- landed{i, Result{Node: c.node, Err: fmt.Errorf("%s: %w", c.node, ErrOffline)}, nil}
				continue
			}
			todo <- i
		}
		close(todo)
		wg.Wait()
		close(done)
	}()
	release := func(l landed) {
		if l.ack != nil {
			l.ack <- struct{}{}
		}
	}
	var delivering landed
	defer func() {
		if p := recover(); p != nil {
			cancel()
			go func() {
				release(delivering)
				for l := range done {
					release(l)
				}
			}()
			panic(p)
		}
	}()
	for delivering = range done {
		func() {
			mu.Lock()
			defer mu.Unlock()
			deliver(delivering.i, delivering.r)
		}()
		release(delivering)
	}
}
