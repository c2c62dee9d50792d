package noded_test

// Benchmarks of an echo call with the daemon inside the benchmark process,
// so that -cpuprofile, -memprofile and -mutexprofile see noded's side of a
// call (HTTP server, job table, supervision) and not only the client's.
// The test binary is its own function process: the init below serves the
// call when noded re-executes it (/proc/self/exe) with the cookie.
//
//	go test -run '^$' -bench 'InProcess' -benchtime 300x \
//	    -cpuprofile cpu.out -memprofile mem.out ./noded/
//	go tool pprof -top -nodecount 30 noded.test cpu.out
//
// BenchmarkFloorWarmProcess is the floor of a warm call: a function
// process already started and greeted, from its request to its reaping.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/noded"
	"github.com/noderpc/noderpc/rpc"
)

func init() {
	if backend.IsFunctionProcess() {
		reg := backend.NewRegistry()
		backend.RegisterBuiltins(reg)
		os.Exit(backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr))
	}
}

// inProcess is a noded running inside the benchmark process.
type inProcess struct {
	addr   string
	client *master.Client
}

// startInProcess runs a noded.Daemon made from flags in a goroutine
// until the test or benchmark ends.
func startInProcess(b testing.TB, flags ...string) *inProcess {
	b.Helper()
	dir := b.TempDir()
	addrFile := filepath.Join(dir, "addr")
	args := append([]string{"--insecure", "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--config", "", "--functions-dir", dir, "--log-level", "error"}, flags...)
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	cfg, _, err := noded.ParseFlags(args, io.Discard)
	if err != nil {
		b.Fatalf("noded.ParseFlags(%q): %v", args, err)
	}
	d, err := noded.New(cfg, noded.Options{Registry: reg})
	if err != nil {
		b.Fatalf("noded.New(%q): %v", args, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Daemon.Run %q: %v", args, err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw, err := os.ReadFile(addrFile)
		if err == nil && bytes.HasSuffix(raw, []byte("\n")) {
			addr := strings.TrimSpace(string(raw))
			c, err := master.New(addr, master.Options{Insecure: true})
			if err != nil {
				b.Fatal(err)
			}
			return &inProcess{addr: addr, client: c}
		}
		select {
		case err := <-done:
			b.Fatalf("Daemon.Run %q ended before listening: %v", args, err)
		case <-time.After(time.Millisecond):
			// Polling the address file, noded's only "listening" signal.
		}
		if time.Now().After(deadline) {
			b.Fatalf("Daemon.Run %q did not listen within 20s", args)
		}
	}
}

// echo is one call, released once read, that must give echoArgs back.
func (d *inProcess) echo() error {
	rec, err := d.client.Call(context.Background(), "echo", echoArgs, master.CallOptions{})
	if err != nil {
		return err
	}
	if !bytes.Equal(rec.Result, echoArgs) {
		return fmt.Errorf("echo %s gave %s", echoArgs, rec.Result)
	}
	return nil
}

// warmIdle reads noded_warm_processes_idle from /metrics.
func (d *inProcess) warmIdle() (int, error) {
	resp, err := http.Get("http://" + d.addr + noded.PathMetrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "noded_warm_processes_idle "); ok {
			var n int
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no noded_warm_processes_idle in /metrics")
}

// benchEcho times b.N echo calls, one after the other.
func (d *inProcess) benchEcho(b *testing.B) {
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := d.echo(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEchoInProcessCold is a cold echo: every call spawns.
func BenchmarkEchoInProcessCold(b *testing.B) {
	d := startInProcess(b, "--warm", "0")
	if err := d.echo(); err != nil {
		b.Fatal(err)
	}
	d.benchEcho(b)
}

// BenchmarkEchoInProcessWarm is a warm echo: the pool holds more
// processes than the benchmark makes calls, and is full when the timer
// starts, so every call takes a warm process. Replacements are started in
// the background while the calls run, as in production.
func BenchmarkEchoInProcessWarm(b *testing.B) {
	pool := b.N + 1
	d := startInProcess(b, "--warm", fmt.Sprint(pool))
	deadline := time.Now().Add(time.Duration(pool)*20*time.Millisecond + 10*time.Second)
	for {
		n, err := d.warmIdle()
		if err != nil {
			b.Fatal(err)
		}
		if n >= pool {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the warm pool holds %d processes after waiting, want %d", n, pool)
		}
		// Polling the pool's gauge: it offers no event when full.
		time.Sleep(10 * time.Millisecond)
	}
	d.benchEcho(b)
}

// BenchmarkFloorWarmProcess times what is left of a call once its process
// is started and greeted: the request written, the result read, the
// process reaped. It is the least a warm call can cost.
func BenchmarkFloorWarmProcess(b *testing.B) {
	req, bin := spawnRequest(b), nodetest.Noded(b)+"-fn"
	for range b.N {
		b.StopTimer()
		cmd := exec.Command(bin, "function", "echo")
		cmd.Env = append(os.Environ(), rpc.FunctionCookieKey+"="+rpc.FunctionCookieValue)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		hello, err := r.ReadSlice('\n')
		if err == nil {
			_, err = rpc.DecodeHello(hello)
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("function process hello: %v", err)
		}
		b.StartTimer()
		stdin.Write(req)
		stdin.Close()
		out, err := io.ReadAll(r)
		werr := cmd.Wait()
		b.StopTimer()
		if err != nil || werr != nil {
			b.Fatalf("function process echo: read %v, wait %v", err, werr)
		}
		res, err := rpc.DecodeFunctionResult(out)
		if err != nil || !bytes.Equal(res.Result, echoArgs) {
			b.Fatalf("function process echo %s: result %s, error %v %v", echoArgs, res.Result, res.Error, err)
		}
		b.StartTimer()
	}
}
