package master

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
)

// BenchmarkFirstContact measures what a fan-out's first round costs the
// client per node: a new Client and its first request, Version, which
// dials the node. One op is a round of firstContacts such contacts made
// by 16 goroutines at once, as a fan-out makes them, against 8 real noded
// processes. Its figures per contact:
//
//   - cpu-ns/contact: this process's CPU (user and system) over the
//     round, the figure a fan-out to a thousand nodes multiplies. The
//     kernel's work for a loopback connection, the node's side of the
//     handshake included, is mostly charged to this process;
//   - allocs/contact and B/contact: the client's heap allocations.
//
// Closing the connections afterwards is left out: a fan-out keeps them
// for its next round. The context can be cancelled, as a master's is.
func BenchmarkFirstContact(b *testing.B) {
	const (
		firstContacts = 64
		workers       = 16
	)
	nodes := nodetest.StartMany(b, 8, nodetest.Options{NoRace: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{Insecure: true, Timeout: 5 * time.Second}
	clients := make([]*Client, firstContacts)
	var (
		cpu           time.Duration
		allocs, bytes uint64
		before, after runtime.MemStats
		failed        atomic.Pointer[error]
		contacts      int
	)
	for b.Loop() {
		runtime.ReadMemStats(&before)
		cpu0 := processCPU(b)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < firstContacts; i = int(next.Add(1) - 1) {
					c, err := New(nodes[i%len(nodes)].Addr(), opts)
					if err == nil {
						_, err = c.Version(ctx)
					}
					if err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
					clients[i] = c
				}
			})
		}
		wg.Wait()
		cpu += processCPU(b) - cpu0
		runtime.ReadMemStats(&after)
		allocs += after.Mallocs - before.Mallocs
		bytes += after.TotalAlloc - before.TotalAlloc
		contacts += firstContacts
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		for _, c := range clients {
			c.Close()
		}
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(contacts), "cpu-ns/contact")
	b.ReportMetric(float64(allocs)/float64(contacts), "allocs/contact")
	b.ReportMetric(float64(bytes)/float64(contacts), "B/contact")
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
