package noded_test

// Tests of noded's edge against hostile clients: connections that say
// nothing or trickle, bodies before authorisation, clients that hang up,
// bodies no strict parser reads. Each starts a real noded on loopback and
// speaks raw TCP from other loopback addresses (127.0.0.2-9, ::1).

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// readAnswer reads one HTTP answer from c and returns its status and the
// kind of its error body ("" for none).
func readAnswer(t testing.TB, c net.Conn) (int, rpc.Kind) {
	t.Helper()
	return nodetest.ReadAnswer(t, c, 20*time.Second)
}

// TestPanicBodyAnswersBadRequest: the 500-byte body that made go-json's
// stream decoder panic (and so ended noded) is a bad request, on both
// procedures that take a body an observer may send, and noded serves on.
func TestPanicBodyAnswersBadRequest(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	body := `{"fn_name":"echo","timeout":5,  "request_id":"0000\b` + strings.Repeat("0", 183) + strings.Repeat("\xd2", 275) + "0"
	d.requestError(t, http.MethodPut, rpc.PathStartFunction, body, 400, rpc.KindBadRequest)
	wait := `{"id":"1:2:3.4:5","timeout":1,"x":"\b` + strings.Repeat("0", 990) + strings.Repeat("\xd2", 300) + "0"
	d.requestError(t, http.MethodPut, rpc.PathWaitForFunction, wait, 400, rpc.KindBadRequest)
	d.version(t)
}

// TestStrictBodies: bodies that a strict parser refuses or reads
// otherwise than go-json are refused, not run.
func TestStrictBodies(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	for _, body := range []string{
		`{"fn_name":"echo","fn_name":"sleep","timeout":1}`,
		`{"FN_NAME":"echo","timeout":1}`,
		`{"fn_name":"echo","timeout":1,"fn_args":{"a":01}}`,
		`{"fn_name":"echo","timeout":1,"fn_args":1.}`,
		"{\"fn_name\":\"echo\",\"timeout\":1,\"fn_args\":\"a\tb\"}",
		"{\"fn_name\":\"echo\",\"timeout\":1,\"fn_args\":\"\xff\"}",
		"{\"fn_name\":\"echo\",\"timeout\":1}\x00",
	} {
		d.requestError(t, http.MethodPut, rpc.PathStartFunction, body, 400, rpc.KindBadRequest)
	}
	e, _ := d.requestError(t, http.MethodPut, rpc.PathStartFunction, `{"fn_name":"echo"}`, 400, rpc.KindBadRequest)
	if !strings.Contains(e.Message, `"timeout"`) {
		t.Errorf("a start without a timeout answered %q, want the message to name timeout", e.Message)
	}
	e, _ = d.requestError(t, http.MethodPut, rpc.PathStartFunction, `{"fn_name":"echo","timeout":"5"}`, 400, rpc.KindBadRequest)
	if !strings.Contains(e.Message, `timeout: want a number of seconds, got the string "5"; write the number without quotes: 5`) {
		t.Errorf(`a start with "timeout":"5" answered %q, want it to name the field, the type and how to write it`, e.Message)
	}
}

// TestOversizedHead: a request head over the read buffer answers 431.
func TestOversizedHead(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := nodetest.DialFrom(t, "127.0.0.1", d.Addr())
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: noded\r\nX-Big: %s\r\n\r\n", rpc.PathVersion, strings.Repeat("a", 64<<10))
	if status, kind := readAnswer(t, c); status != http.StatusRequestHeaderFieldsTooLarge || kind != rpc.KindTooLarge {
		t.Errorf("a 64 KiB header answered %d %q, want 431 too_large", status, kind)
	}
}

// TestSilentConnections: connections that send nothing, over plain HTTP
// and TLS, neither stall the accept loop nor keep a master out for longer
// than the head timeout, and SIGTERM still stops noded with a thousand of
// them held.
func TestSilentConnections(t *testing.T) {
	t.Parallel()
	pki := nodetest.NewPKI(t)
	const headTimeout = 2 * time.Second
	n := nodetest.Start(t, nodetest.Options{
		TLS:   pki.NodeTLS(t, "localhost"),
		Flags: []string{"--max-conns", "1010", "--max-conns-per-ip", "1000", "--head-timeout", headTimeout.String(), "--shutdown-grace", "2s"},
	})
	crt, key := pki.Issue(t, rpc.RoleMaster, "master")
	cfg, err := master.LoadTLS(crt, key, pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	version := func(what string) time.Duration {
		t.Helper()
		c, err := master.New(n.Addr(), master.Options{TLS: cfg, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if _, err := c.Version(t.Context()); err != nil {
			t.Fatalf("Version %s: %v", what, err)
		}
		return time.Since(start)
	}
	// 1,000 silent connections from 127.0.0.2, 5 past its share: the
	// refusals run a TLS handshake that never comes, off the accept loop.
	for range 1005 {
		nodetest.DialFrom(t, "127.0.0.2", n.Addr())
	}
	t.Logf("a master's Version with 1,000 silent TLS connections held: %s", version("with 1,000 silent connections held"))
	// The rest of --max-conns from other addresses: noded is full of
	// silent connections, and a master waits for one to time out.
	for i := range 10 {
		nodetest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 3+i%6), n.Addr())
	}
	took := version("with every slot held by silent connections")
	t.Logf("a master's Version with every slot held by silent connections: %s (--head-timeout %s)", took, headTimeout)

	// SIGTERM with a thousand stalled handshakes: the held connections
	// are closed and noded exits.
	for range 1000 {
		nodetest.DialFrom(t, "127.0.0.2", n.Addr())
	}
	start := time.Now()
	if err := n.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.Wait(2*time.Second + 5*time.Second); err != nil {
		t.Fatalf("noded with 1,000 stalled handshakes after SIGTERM: %v", err)
	}
	t.Logf("SIGTERM with 1,000 stalled handshakes held: exited in %s (--shutdown-grace 2s)", time.Since(start))
}

// TestIdleAndSlowClients: at --max-conns, a new connection takes the slot
// of the oldest idle keep-alive connection at once; with the slots held by
// clients that trickle their head, it is served once the head timeout
// cuts one of them off.
func TestIdleAndSlowClients(t *testing.T) {
	t.Parallel()
	d := startNoded(t, "--max-conns", "8", "--head-timeout", "2s")
	var idle []net.Conn
	for i := range 8 {
		c := nodetest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i%4), d.Addr())
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: noded\r\n\r\n", rpc.PathVersion)
		if status, _ := readAnswer(t, c); status != http.StatusOK {
			t.Fatalf("GET %s on connection %d: %d", rpc.PathVersion, i, status)
		}
		idle = append(idle, c)
	}
	d.version(t) // over a new connection: the oldest idle one gives way
	idle[0].SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Error("the oldest idle connection was not closed to admit a new one")
	}
	for _, c := range idle {
		c.Close()
	}
	d.client.CloseIdleConnections()

	// Eight clients trickling their request head, a line every 500ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		c := nodetest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i%4), d.Addr())
		wg.Go(func() {
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\n", rpc.PathVersion)
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := fmt.Fprintf(c, "X-Slow: 1\r\n"); err != nil {
						return
					}
				}
			}
		})
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	// The kernel queued the eight before this one, and noded admits in
	// that order: this one finds every slot held.
	start := time.Now()
	c := nodetest.DialFrom(t, "127.0.0.9", d.Addr())
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: noded\r\n\r\n", rpc.PathVersion)
	if status, _ := readAnswer(t, c); status != http.StatusOK {
		t.Fatalf("GET %s with every slot held by slow clients: %d, want 200", rpc.PathVersion, status)
	}
	t.Logf("a master's Version with every slot held by clients trickling their head: %s (--head-timeout 2s)", time.Since(start))
}

// TestBodyNotReadBeforeAuthorisation: a body is refused from the request
// head (wrong procedure, declared over --max-request, an observer's
// start, a multipart one too) without noded reading it, and a chunked
// body the moment it crosses --max-request; 16 observers sending 60 MB
// each leave noded's memory where it was.
func TestBodyNotReadBeforeAuthorisation(t *testing.T) {
	t.Parallel()
	pki := nodetest.NewPKI(t)
	n := nodetest.Start(t, nodetest.Options{NoRace: true, TLS: pki.NodeTLS(t, "localhost"), Flags: []string{"--max-request", "1048576"}})
	crt, key := pki.Issue(t, rpc.RoleObserver, "watcher")
	mcrt, mkey := pki.Issue(t, rpc.RoleMaster, "master")
	dial := func(crt, key string) net.Conn {
		t.Helper()
		cfg, err := master.LoadTLS(crt, key, pki.CA())
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "localhost"
		c, err := tls.Dial("tcp", n.Addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Heads only: an answer without a byte of the body proves noded
	// did not wait for it.
	part := "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n"
	part += strings.Repeat("f", 8<<10-len(part))
	for _, tc := range []struct {
		what, head string
		status     int
		kind       rpc.Kind
		crt, key   string
	}{
		{"an observer's start", "PUT /StartFunction HTTP/1.1\r\nHost: n\r\nContent-Length: 60000000\r\n\r\n", 403, rpc.KindForbidden, crt, key},
		// fasthttp reads a multipart form whole before any handler,
		// unless told not to; any other body, the 8 KiB it reads ahead.
		{"an observer's multipart start", "PUT /StartFunction HTTP/1.1\r\nHost: n\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n" + part, 403, rpc.KindForbidden, crt, key},
		{"a body to a GET procedure", "PUT /ListFunctions HTTP/1.1\r\nHost: n\r\nContent-Length: 60000000\r\n\r\n", 400, rpc.KindBadRequest, mcrt, mkey},
		{"a declared body over --max-request", "PUT /StartFunction HTTP/1.1\r\nHost: n\r\nContent-Length: 60000000\r\n\r\n", 413, rpc.KindTooLarge, mcrt, mkey},
	} {
		c := dial(tc.crt, tc.key)
		io.WriteString(c, tc.head)
		if status, kind := readAnswer(t, c); status != tc.status || kind != tc.kind {
			t.Errorf("%s: answered %d %q before its body, want %d %q", tc.what, status, kind, tc.status, tc.kind)
		}
	}

	// A chunked body is refused as it crosses --max-request: noded
	// answers while the client still sends.
	c := dial(mcrt, mkey)
	io.WriteString(c, "PUT /StartFunction HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n")
	answered := make(chan int, 1)
	go func() { status, _ := readAnswer(t, c); answered <- status }()
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat(" ", 64<<10))
	sent := 0
send:
	for sent < 64<<20 {
		select {
		case status := <-answered:
			if status != http.StatusRequestEntityTooLarge {
				t.Errorf("a chunked body over --max-request answered %d, want 413", status)
			}
			break send
		default:
		}
		if _, err := io.WriteString(c, chunk); err != nil {
			break // noded closed the connection after its answer
		}
		sent += 64 << 10
	}
	if sent >= 64<<20 {
		t.Errorf("noded took %d bytes of a chunked body without refusing it (--max-request 1 MiB)", sent)
	}

	// Sixteen observers sending 60 MB each, in parallel.
	before := n.VmHWM(t)
	var wg sync.WaitGroup
	for range 16 {
		c := dial(crt, key)
		wg.Go(func() {
			fmt.Fprintf(c, "PUT /StartFunction HTTP/1.1\r\nHost: n\r\nContent-Length: 60000000\r\n\r\n")
			buf := make([]byte, 1<<20)
			for sent := 0; sent < 60000000; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	after := n.VmHWM(t)
	t.Logf("16 observers sending 60 MB each: noded's peak RSS %d MiB -> %d MiB", before>>20, after>>20)
	if grew := after - before; grew > 64<<20 {
		t.Errorf("noded's peak RSS grew by %d MiB while 16 observers sent 60 MB each, want under 64 MiB", grew>>20)
	}
}

// TestHangupEndsTheWait: a client that closes its connection while its
// start waits frees the request at once; the call itself runs on.
func TestHangupEndsTheWait(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := nodetest.DialFrom(t, "127.0.0.2", d.Addr())
	body := `{"fn_name":"sleep","fn_args":{"seconds":30},"timeout":30}`
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: noded\r\nContent-Length: %d\r\n\r\n%s", rpc.PathStartFunction, len(body), body)
	d.AwaitMetric(t, "noded_start_requests_in_flight", "1", func(v float64) bool { return v == 1 })
	start := time.Now()
	c.Close()
	d.AwaitMetric(t, "noded_start_requests_in_flight", "0 after the client hung up", func(v float64) bool { return v == 0 })
	t.Logf("a start whose client hung up ended %s later", time.Since(start))
	if calls := d.list(t).Calls; len(calls) != 1 || calls[0].State != rpc.StateRunning {
		t.Errorf("calls after the hang-up: %+v, want the sleep still running", calls)
	}
}

// TestHalfCloseIsAnswered: a client that shuts down only its sending side
// after its start cannot be told from one that hung up, and its wait ends
// as theirs does, but it still reads the answer: the call's record, still
// running, whose ID it can wait on.
func TestHalfCloseIsAnswered(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	c := nodetest.DialFrom(t, "127.0.0.2", d.Addr())
	body := `{"fn_name":"sleep","fn_args":{"seconds":30},"timeout":30}`
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: noded\r\nContent-Length: %d\r\n\r\n%s", rpc.PathStartFunction, len(body), body)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a start whose client half-closed: %v", err)
	}
	defer resp.Body.Close()
	var rec rpc.Call
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %d to a half-closed start: %+v, %v", resp.StatusCode, rec, err)
	}
	if rec.Finished || rec.State != rpc.StateRunning || rec.ID == "" {
		t.Errorf("answer to a half-closed start: %+v, want the sleep's record, running", rec)
	}
	if calls := d.list(t).Calls; len(calls) != 1 || calls[0].ID != rec.ID || calls[0].State != rpc.StateRunning {
		t.Errorf("calls after the half-close: %+v, want the sleep still running", calls)
	}
}

// TestPerAddressLimitIPv6: --max-conns-per-ip counts ::1 as it counts an
// IPv4 address.
func TestPerAddressLimitIPv6(t *testing.T) {
	t.Parallel()
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	d := startNodedWith(t, nodetest.Options{Listen: "[::1]:0", Flags: []string{"--max-conns-per-ip", "4"}})
	var over int
	for i := range 10 {
		c := nodetest.DialFrom(t, "::1", d.Addr())
		if i < 4 {
			continue
		}
		if status, kind := readAnswer(t, c); status == http.StatusTooManyRequests && kind == rpc.KindBusy {
			over++
		}
	}
	if over != 6 {
		t.Errorf("10 connections from ::1 with --max-conns-per-ip 4: %d answered 429 busy, want 6", over)
	}
}

// TestKeyReadableByOthers: a private key others may read is refused at
// start (exit 2, saying which chmod fixes it) and at SIGHUP (the key in
// force stays).
func TestKeyReadableByOthers(t *testing.T) {
	t.Parallel()
	pki := nodetest.NewPKI(t)
	nt := pki.NodeTLS(t, "localhost")
	if err := os.Chmod(nt.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	status, out := runNoded(t, "--config=", "--listen", "127.0.0.1:0", "--cert", nt.Cert, "--key", nt.Key, "--client-ca", nt.ClientCA)
	if status != 2 || !strings.Contains(out, "chmod 600 "+nt.Key) {
		t.Errorf("noded with a key of mode 0644: exit %d, %s; want exit 2 naming chmod 600", status, out)
	}
	if err := os.Chmod(nt.Key, 0o640); err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, nodetest.Options{TLS: nt})
	if err := os.Chmod(nt.Key, 0o604); err != nil {
		t.Fatal(err)
	}
	if err := n.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n.AwaitLogLine(t, "certificates not reloaded", "chmod 600")
}

// TestCheckConfigListen: a --listen that cannot be parsed fails
// --check-config with exit 2.
func TestCheckConfigListen(t *testing.T) {
	t.Parallel()
	status, out := runNoded(t, "--config=", "--insecure", "--listen", "127.0.0.1:22010x", "--check-config")
	if status != 2 || !strings.Contains(out, "--listen") {
		t.Errorf("--check-config with --listen 127.0.0.1:22010x: exit %d, %s; want 2 naming --listen", status, out)
	}
}

// TestUnreadBodyIsNeverARequest: a request refused from its head closes
// its connection, so a body noded did not read is never taken for the
// next request, whatever form the path takes.
func TestUnreadBodyIsNeverARequest(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	inner := "GET " + rpc.PathVersion + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, target := range []string{"/ListFunctions?x=1", "/%53tartFunction", "//StartFunction", "/Nope"} {
		for _, method := range []string{http.MethodGet, http.MethodPut} {
			c := nodetest.DialFrom(t, "127.0.0.1", d.Addr())
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", method, target, len(inner), inner)
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s %s with a request as its body: %v", method, target, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && method == http.MethodGet && target == "/ListFunctions?x=1" {
				// A query string is allowed; the body of a GET is not.
				t.Errorf("%s %s with a body answered 200, want it refused", method, target)
			}
			if second, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("%s %s: its body was served as a second request (%s)", method, target, second.Status)
			}
		}
	}
}

// TestObserverCannotHoldBodyMemory: only StartFunction, which an observer
// may not call, takes a body the size of --max-request; a WaitForFunction
// that declares one is refused from its head, before any memory is held.
func TestObserverCannotHoldBodyMemory(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	for _, path := range []string{rpc.PathWaitForFunction, rpc.PathCancelFunction, rpc.PathReleaseFunction} {
		c := nodetest.DialFrom(t, "127.0.0.1", d.Addr())
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", path, 64<<20)
		if status, kind := readAnswer(t, c); status != http.StatusRequestEntityTooLarge || kind != rpc.KindTooLarge {
			t.Errorf("PUT %s declaring 64 MiB answered %d %q before its body, want 413 too_large", path, status, kind)
		}
	}
}

// TestDeclaredBodiesDoNotHoldTheBudget: clients that declare the largest
// body StartFunction takes, send a few kilobytes of it and stall hold a
// step of --max-request-memory each, not the length they declared: a
// master's start is served meanwhile, and once they hang up a body as
// large as the whole budget fits again.
func TestDeclaredBodiesDoNotHoldTheBudget(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	d := startNoded(t, "--max-request", strconv.Itoa(limit), "--max-request-memory", strconv.Itoa(limit))
	var stalled []net.Conn
	for i := range 8 {
		c := nodetest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i%4), d.Addr())
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", rpc.PathStartFunction, limit, strings.Repeat(" ", 9000))
		stalled = append(stalled, c)
	}
	for i := range 3 {
		a, err := d.roundTrip(http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: "echo", FnArgs: json.RawMessage(`[1]`), Timeout: 20})
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK {
			t.Fatalf("start %d while 8 clients stall on bodies declared at --max-request %d (--max-request-memory %d): %d %s, want 200", i, limit, limit, a.status, a.body)
		}
	}
	for _, c := range stalled {
		c.Close()
	}
	// A start whose body is the whole budget: busy until the stalled
	// clients' handlers have seen them go, and then never again.
	args := `"` + strings.Repeat("a", limit-len(`{"fn_name":"echo","timeout":20,"fn_args":""}`)) + `"`
	whole := `{"fn_name":"echo","timeout":20,"fn_args":` + args + `}`
	if len(whole) != limit {
		t.Fatalf("the whole-budget body is %d bytes, want %d", len(whole), limit)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, err := d.roundTrip(http.MethodPut, rpc.PathStartFunction, whole)
		if err != nil {
			t.Fatal(err)
		}
		if a.status == http.StatusOK {
			break
		}
		if a.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("a start with a %d-byte body after the stalled clients hung up: %d %s, want 200 within 20s", limit, a.status, clip(string(a.body)))
		}
		time.Sleep(10 * time.Millisecond) // polling: the budget shows nowhere else
	}
}

// TestAmbiguousFramingRefused: a request whose body length two readers
// could read differently (a transfer coding other than chunked, which
// fasthttp drops and so reads no body; or both Content-Length and
// Transfer-Encoding) is refused with 400 and its connection closed, so
// that what follows its head is never served as another request. A
// request with a second one hidden where its body would be gets one
// answer, and the connection ends.
func TestAmbiguousFramingRefused(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	inner := "GET " + rpc.PathVersion + " HTTP/1.1\r\nHost: x\r\n\r\n"
	chunkedInner := "0\r\n\r\n" + inner // chunked: an empty body, then inner
	for _, tc := range []struct{ what, request string }{
		{"GET, Transfer-Encoding: identity", "GET " + rpc.PathVersion + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n" + inner},
		{"PUT, Transfer-Encoding: identity", "PUT " + rpc.PathWaitForFunction + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n" + inner},
		{"PUT, Transfer-Encoding: IDENTITY and Content-Length", fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: IDENTITY\r\nContent-Length: %d\r\n\r\n%s", rpc.PathWaitForFunction, len(inner), inner)},
		{"Content-Length, then Transfer-Encoding: chunked", fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s", rpc.PathWaitForFunction, len(chunkedInner), chunkedInner)},
		{"Transfer-Encoding: chunked, then Content-Length", fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n%s", rpc.PathStartFunction, len(chunkedInner), chunkedInner)},
		{"Content-Length: 0 and Transfer-Encoding: chunked on a GET", "GET " + rpc.PathVersion + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedInner},
	} {
		c := nodetest.DialFrom(t, "127.0.0.1", d.Addr())
		io.WriteString(c, tc.request)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", tc.what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var er rpc.ErrorResponse
		if json.Unmarshal(body, &er) != nil || er.Error == nil || resp.StatusCode != http.StatusBadRequest || er.Error.Kind != rpc.KindBadRequest {
			t.Errorf("%s: answered %d %s, want 400 bad_request", tc.what, resp.StatusCode, body)
		} else if !strings.Contains(er.Error.Message, "Transfer-Encoding") {
			t.Errorf("%s: answered %q, want the message to name Transfer-Encoding", tc.what, er.Error.Message)
		}
		if second, err := http.ReadResponse(br, nil); err == nil {
			t.Errorf("%s: what followed the head was served as a second request (%s)", tc.what, second.Status)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: after the answer, reading on: %v, want the connection closed", tc.what, err)
		}
	}

	// A chunked body alone is framed one way only, and served.
	body := `{"fn_name":"echo","fn_args":[1,2],"timeout":20}`
	c := nodetest.DialFrom(t, "127.0.0.1", d.Addr())
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", rpc.PathStartFunction, len(body), body)
	if status, kind := readAnswer(t, c); status != http.StatusOK {
		t.Errorf("a StartFunction with a chunked body answered %d %q, want 200", status, kind)
	}
}

// TestBareLFHead: a request head whose lines end with a bare LF, which
// fasthttp would wait on until the head timeout and then call late, is
// refused at once with a message that says why. A head that mixes line
// endings but ends with CRLF CRLF is served, as fasthttp serves it. On a
// kept-alive connection only the first head is followed: a later one
// that never ends is answered at the head timeout, naming the likely
// cause.
func TestBareLFHead(t *testing.T) {
	t.Parallel()
	// An answer read within 20s came long before this head timeout.
	d := startNoded(t, "--head-timeout", "5m")
	for _, head := range []string{
		"GET /Version HTTP/1.1\nHost: noded\n\n",
		"GET /Version HTTP/1.1\r\nHost: noded\r\n\n",
		"GET /Version HTTP/1.1\r\nHost: noded\n\r\n",
		"GET /Version HTTP/1.1\n\n",
		"\r\nGET /Version HTTP/1.1\nHost: noded\n\n",
		"PUT /StartFunction HTTP/1.1\nHost: noded\nContent-Length: 31\n\n{\"fn_name\":\"echo\",\"timeout\":1}",
	} {
		c := nodetest.DialFrom(t, "127.0.0.3", d.Addr())
		fmt.Fprint(c, head)
		status, e, body := nodetest.ReadAnswerBody(t, c, 20*time.Second)
		if status != http.StatusBadRequest || e == nil || e.Kind != rpc.KindBadRequest || !strings.Contains(e.Message, "bare LF") {
			t.Errorf("head %q answered %d %s, want 400 bad_request about the bare LF", head, status, body)
		}
	}
	for _, head := range []string{
		"GET /Version HTTP/1.1\nHost: noded\r\n\r\n",
		"\r\nGET /Version HTTP/1.1\r\nHost: noded\r\n\r\n",
	} {
		c := nodetest.DialFrom(t, "127.0.0.3", d.Addr())
		fmt.Fprint(c, head)
		if status, e, body := nodetest.ReadAnswerBody(t, c, 20*time.Second); status != http.StatusOK || e != nil {
			t.Errorf("head %q answered %d %s, want 200", head, status, body)
		}
	}

	late := startNoded(t, "--head-timeout", "1s")
	c := nodetest.DialFrom(t, "127.0.0.3", late.Addr())
	fmt.Fprint(c, "GET /Version HTTP/1.1\r\nHost: noded\r\n\r\n")
	if status, _, body := nodetest.ReadAnswerBody(t, c, 20*time.Second); status != http.StatusOK {
		t.Fatalf("a well-formed first request answered %d %s, want 200", status, body)
	}
	fmt.Fprint(c, "GET /Version HTTP/1.1\nHost: noded\n\n")
	status, e, body := nodetest.ReadAnswerBody(t, c, 20*time.Second)
	if status != http.StatusBadRequest || e == nil || !strings.Contains(e.Message, "head did not arrive within --head-timeout") || !strings.Contains(e.Message, "bare LF") {
		t.Errorf("a bare-LF head after a well-formed request answered %d %s, want 400 at the head timeout, naming the bare LF", status, body)
	}
}
