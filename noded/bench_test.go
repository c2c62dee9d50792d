package noded_test

// Benchmarks of one echo call from start to result through noded, beside
// the floors it is made of, measured in the same run on the same binary:
//
//   - BenchmarkFloorSpawn: a bare spawn and wait of noded's binary as a
//     function process, fed an echo request on stdin (the work of a call
//     without HTTP and without the job table);
//   - BenchmarkFloorHTTP: a keep-alive GET /Version round trip (HTTP
//     without a call).
//
// BenchmarkEchoHTTP measures both floors again after its own loop and
// reports echo's time over their sum as x-floor: 1.0 would mean noded adds
// nothing to a spawn and a round trip.
//
//	go test -run XXX -bench . -benchtime 200x ./noded/

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// echoArgs is what every benchmarked echo sends and must get back.
var echoArgs = json.RawMessage(`{"bench":"echo","n":[1,2,3]}`)

func BenchmarkEchoHTTP(b *testing.B) {
	d := startNoded(b)
	req := rpc.StartRequest{FnName: "echo", FnArgs: echoArgs, Timeout: 5}
	echo := func() error {
		var c rpc.Call
		if err := d.okCall(http.MethodPut, rpc.PathStartFunction, req, &c); err != nil {
			return err
		}
		if !c.Finished {
			got, err := d.finishErr(c.ID)
			if err != nil {
				return err
			}
			c = *got
		}
		if c.State != rpc.StateSucceeded || !bytes.Equal(c.Result, echoArgs) {
			return fmt.Errorf("echo %s: state %q result %s error %v", echoArgs, c.State, c.Result, c.Error)
		}
		return nil
	}
	if err := echo(); err != nil { // warm the connection and the page cache
		b.Fatal(err)
	}
	b.ResetTimer()
	begin := time.Now()
	for range b.N {
		if err := echo(); err != nil {
			b.Fatal(err)
		}
	}
	perEcho := time.Since(begin) / time.Duration(b.N)
	b.StopTimer()

	// Both floors, measured now on the same machine in the same state.
	spawnReq, bin := spawnRequest(b), nodetest.Noded(b)+"-fn"
	begin = time.Now()
	for range b.N {
		if err := spawnEcho(bin, spawnReq, true); err != nil {
			b.Fatal(err)
		}
	}
	perSpawn := time.Since(begin) / time.Duration(b.N)
	begin = time.Now()
	for range b.N {
		if err := getVersion(d); err != nil {
			b.Fatal(err)
		}
	}
	perHTTP := time.Since(begin) / time.Duration(b.N)
	b.ReportMetric(float64(perSpawn.Nanoseconds()), "floor-spawn-ns")
	b.ReportMetric(float64(perHTTP.Nanoseconds()), "floor-http-ns")
	b.ReportMetric(float64(perEcho)/float64(perSpawn+perHTTP), "x-floor")
}

// BenchmarkEchoHTTPParallel is echo's throughput with many clients at once.
func BenchmarkEchoHTTPParallel(b *testing.B) {
	d := startNoded(b)
	req := rpc.StartRequest{FnName: "echo", FnArgs: echoArgs, Timeout: 5}
	b.SetParallelism(4)
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var c rpc.Call
			if err := d.okCall(http.MethodPut, rpc.PathStartFunction, req, &c); err != nil {
				b.Error(err)
				return
			}
			if c.State != rpc.StateSucceeded || !bytes.Equal(c.Result, echoArgs) {
				b.Errorf("echo %s: state %q result %s error %v", echoArgs, c.State, c.Result, c.Error)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "calls/s")
}

// BenchmarkFloorSpawn is a spawn of a function process fed one echo
// request, without noded: of the function binary noded runs its Go
// functions in (noded-fn), of noded's own binary (where they ran before,
// and still run for a noded with no function binary beside it), and of
// the minimal Go process of noderpc bench (noderpc-floor), the floor of
// any Go program's start.
func BenchmarkFloorSpawn(b *testing.B) {
	req := spawnRequest(b)
	for _, bc := range []struct {
		name string
		bin  string
		echo bool // the binary runs echo, whose result is checked
	}{
		{"noded-fn", nodetest.Noded(b) + "-fn", true},
		{"noded", nodetest.Noded(b), true},
		{"minimal", nodetest.Binary(b, "github.com/noderpc/noderpc/tools/noderpc-floor"), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				if err := spawnEcho(bc.bin, req, bc.echo); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFloorHTTP(b *testing.B) {
	d := startNoded(b)
	if err := getVersion(d); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := getVersion(d); err != nil {
			b.Fatal(err)
		}
	}
}

// spawnRequest is the function request noded would write for the echo.
func spawnRequest(tb testing.TB) []byte {
	tb.Helper()
	id := rpc.NewCallID(os.Getpid(), os.Getpid(), time.Now()).String()
	raw, err := json.Marshal(rpc.FunctionRequest{CallID: id, FnName: "echo", FnArgs: echoArgs})
	if err != nil {
		tb.Fatal(err)
	}
	return append(raw, '\n')
}

// spawnEcho runs bin as a function process, as noded does (cookie in the
// environment, request on stdin), and checks its hello and, with echo,
// that its result is echo's.
func spawnEcho(bin string, req []byte, echo bool) error {
	cmd := exec.Command(bin, "function", "echo")
	cmd.Env = append(os.Environ(), rpc.FunctionCookieKey+"="+rpc.FunctionCookieValue)
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("function process echo: %v; stderr: %s", err, stderr.Bytes())
	}
	hello, rest, ok := bytes.Cut(out, []byte("\n"))
	if !ok {
		return fmt.Errorf("function process echo wrote %q: no hello line", out)
	}
	if _, err := rpc.DecodeHello(hello); err != nil {
		return err
	}
	res, err := rpc.DecodeFunctionResult(rest)
	if err != nil {
		return err
	}
	if echo && (res.Error != nil || !bytes.Equal(res.Result, echoArgs)) {
		return fmt.Errorf("function process echo %s: result %s error %v", echoArgs, res.Result, res.Error)
	}
	return nil
}

// getVersion is one keep-alive GET /Version round trip.
func getVersion(d *node) error {
	var v rpc.VersionResponse
	if err := d.okCall(http.MethodGet, rpc.PathVersion, nil, &v); err != nil {
		return err
	}
	if v.Protocol != rpc.ProtocolVersion {
		return fmt.Errorf("GET /Version: protocol %d, want %d", v.Protocol, rpc.ProtocolVersion)
	}
	return nil
}
