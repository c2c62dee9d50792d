package master

import (
	"context"
	"fmt"
	"sync"

	"github.com/noderpc/noderpc/rpc"
)

// Result is the outcome of one node's call in [CallEach].
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
// one Result per client, in the order of clients. A node's failure is its
// own Result's error; it never fails the others. Nodes marked offline get
// an error matching [ErrOffline] without any network traffic, and take no
// slot of the concurrency bound. opts applies to every call; opts.OnLog
// is called by one call at a time.
func CallEach(ctx context.Context, clients []*Client, fn string, args any, concurrency int, opts CallOptions) []Result {
	results := make([]Result, len(clients))
	raw, err := encodeArgs(args)
	if err != nil {
		for i, c := range clients {
			results[i] = Result{Node: c.node, Err: fmt.Errorf("%s: %w", c.node, err)}
		}
		return results
	}
	if opts.OnLog != nil {
		var mu sync.Mutex
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

	// A fixed pool of workers, not a goroutine per node: a fan-out to a
	// thousand nodes holds at most concurrency goroutines.
	todo := make(chan int)
	var wg sync.WaitGroup
	for range min(concurrency, len(clients)) {
		wg.Go(func() {
			for i := range todo {
				c := clients[i]
				rec, err := c.call(ctx, fn, raw, opts)
				results[i] = Result{Node: c.node, Call: rec, Err: err}
			}
		})
	}
	for i, c := range clients {
		if c.Offline() {
			results[i] = Result{Node: c.node, Err: fmt.Errorf("%s: %w", c.node, ErrOffline)}
			continue
		}
		todo <- i
	}
	close(todo)
	wg.Wait()
	return results
}
