package master_test

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/tools/bench"
)

// BenchmarkFirstContact measures what a fan-out's first round costs the
// client per node: a new Client and its first request, Version, which
// dials the node ("client"), beside its floor in the same run ("bare":
// noderpc bench's dial floor, bench.BareContact). One op is
// a round of firstContacts such contacts made by 16 goroutines at once,
// as a fan-out makes them, against 8 real noded processes. Its figures
// per contact:
//
//   - cpu-ns/contact: this process's CPU (user and system) over the
//     round, the figure a fan-out to a thousand nodes multiplies. The
//     kernel's work for a loopback connection, the node's side of the
//     handshake included, is mostly charged to this process;
//   - allocs/contact and B/contact: the heap allocations.
//
// Closing the connections afterwards is left out: a fan-out keeps them
// for its next round. The context can be cancelled, as a master's is.
func BenchmarkFirstContact(b *testing.B) {
	nodes := nodetest.StartMany(b, 8, nodetest.Options{NoRace: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := master.Options{Insecure: true, Timeout: 5 * time.Second}
	b.Run("client", func(b *testing.B) {
		benchmarkContacts(b, func(i int) (io.Closer, error) {
			c, err := master.New(nodes[i%len(nodes)].Addr(), opts)
			if err != nil {
				return nil, err
			}
			_, err = c.Version(ctx)
			return closer(c.Close), err
		})
	})
	b.Run("bare", func(b *testing.B) {
		benchmarkContacts(b, func(i int) (io.Closer, error) {
			return bench.BareContact(nodes[i%len(nodes)].Addr(), opts.Timeout)
		})
	})
}

// closer makes a Close without an error an io.Closer.
type closer func()

func (c closer) Close() error { c(); return nil }

// benchmarkContacts runs BenchmarkFirstContact's rounds of contact, which
// makes the i-th first contact of a round and returns what closes it.
func benchmarkContacts(b *testing.B, contact func(i int) (io.Closer, error)) {
	const (
		firstContacts = 64
		workers       = 16
	)
	opened := make([]io.Closer, firstContacts)
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
					c, err := contact(i)
					opened[i] = c
					if err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
		wg.Wait()
		cpu += processCPU(b) - cpu0
		runtime.ReadMemStats(&after)
		allocs += after.Mallocs - before.Mallocs
		bytes += after.TotalAlloc - before.TotalAlloc
		contacts += firstContacts
		for i, c := range opened {
			if c != nil {
				c.Close()
				opened[i] = nil
			}
		}
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
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
