package noded_test

// Integration tests of noded's mutual TLS with certificates made by the
// cluster CA's code (tools/ca, through nodetest.PKI): who is refused, who
// may call what, the node's identity checked by the client, and
// certificate rotation under load.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools"
	"github.com/noderpc/noderpc/tools/ca"
)

// startTLS issues a node certificate named name from p and starts noded
// with it.
func startTLS(t testing.TB, p *nodetest.PKI, name string) *nodetest.Node {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{TLS: p.NodeTLS(t, name)})
}

// clientTLS builds a client configuration by hand, without
// master.LoadTLS's checks, so that noded's own refusals are what is
// tested. An empty crt presents no certificate.
func clientTLS(t *testing.T, crt, key, caFile string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS13}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RootCAs.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	if crt != "" {
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// client returns a master client of addr with cfg and quick retries.
func client(t *testing.T, addr string, cfg *tls.Config) *master.Client {
	t.Helper()
	c, err := newClient(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newClient(addr string, cfg *tls.Config) (*master.Client, error) {
	quick := master.Policy{MaxElapsed: 5 * time.Second}
	return master.New(addr, master.Options{
		TLS:     cfg,
		Timeout: 4 * time.Second,
		Retry:   master.RetryPolicies{Start: quick, Wait: quick, Cancel: quick, Release: quick, List: quick, Version: quick},
	})
}

// wantRefusedByNode checks that err is noded refusing the client's
// certificate during the handshake, at once and not retried.
func wantRefusedByNode(t *testing.T, what string, err error, took time.Duration) {
	t.Helper()
	var cerr *master.CertificateError
	if !errors.As(err, &cerr) || !cerr.ByNode || !errors.Is(err, rpc.ErrCertificate) {
		t.Fatalf("%s: Version = %v (%T); want a CertificateError from the node", what, err, err)
	}
	if took > 2*time.Second {
		t.Errorf("%s: refusal took %s; a refused certificate must not be retried", what, took)
	}
}

func TestTLSRefusesClients(t *testing.T) {
	p := nodetest.NewPKI(t)
	n := startTLS(t, p, "localhost")
	other := nodetest.NewPKI(t)
	otherCrt, otherKey := other.Issue(t, rpc.RoleMaster, "intruder")
	expCrt, expKey := p.IssueRequest(t, ca.IssueRequest{Name: "old-master", Role: rpc.RoleMaster, NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Days: 30})
	nodeCrt, nodeKey := p.Issue(t, rpc.RoleNode, "node2")

	for _, tt := range []struct {
		name     string
		crt, key string
	}{
		{"no certificate", "", ""},
		{"certificate of another CA", otherCrt, otherKey},
		{"expired certificate", expCrt, expKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, n.Addr(), clientTLS(t, tt.crt, tt.key, p.CA()))
			start := time.Now()
			_, err := c.Version(context.Background())
			wantRefusedByNode(t, tt.name, err, time.Since(start))
		})
	}
	// A node certificate may call (it says hello to masterd with it),
	// so the handshake passes; its role may call nothing on a node.
	asNode := client(t, n.Addr(), clientTLS(t, nodeCrt, nodeKey, p.CA()))
	if _, err := asNode.Version(context.Background()); !errors.Is(err, rpc.ErrForbidden) {
		t.Errorf("Version with a node certificate = %v; want forbidden by its role", err)
	}

	// Plain HTTP to the HTTPS port is served nothing: it is told, in
	// plain HTTP, that the port serves TLS.
	resp, err := http.Get("http://" + n.Addr() + rpc.PathVersion)
	if err != nil {
		t.Fatalf("plain HTTP GET %s: %v; want an answer saying the port serves TLS", rpc.PathVersion, err)
	}
	defer resp.Body.Close()
	var er rpc.ErrorResponse
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &er) != nil || er.Error == nil || er.Error.Kind != rpc.KindTLSMismatch {
		t.Errorf("plain HTTP GET %s answered %s %s; want 400 tls_mismatch", rpc.PathVersion, resp.Status, body)
	}
}

func TestTLSRoles(t *testing.T) {
	p := nodetest.NewPKI(t)
	n := startTLS(t, p, "localhost")
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "master1")
	oCrt, oKey := p.Issue(t, rpc.RoleObserver, "observer1")
	ctx := context.Background()

	mcfg, err := master.LoadTLS(mCrt, mKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	m := client(t, n.Addr(), mcfg)
	res, err := m.Call(ctx, "echo", json.RawMessage(`{"hello":"tls"}`), master.CallOptions{})
	if err != nil || string(res.Result) != `{"hello":"tls"}` {
		t.Fatalf("master Call echo = %+v, %v; want {\"hello\":\"tls\"}", res, err)
	}
	running, err := m.StartFunction(ctx, rpc.StartRequest{FnName: "sleep", FnArgs: json.RawMessage(`{"seconds":60}`)})
	if err != nil {
		t.Fatalf("master StartFunction sleep: %v", err)
	}

	ocfg, err := master.LoadTLS(oCrt, oKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	o := client(t, n.Addr(), ocfg)
	if _, err := o.Version(ctx); err != nil {
		t.Errorf("observer Version: %v; want it allowed", err)
	}
	if calls, err := o.ListCalls(ctx); err != nil || len(calls) != 1 {
		t.Errorf("observer ListCalls = %v, %v; want the one running call", calls, err)
	}
	if fns, err := o.ListFunctions(ctx); err != nil || len(fns) == 0 {
		t.Errorf("observer ListFunctions = %v, %v; want the node's functions", fns, err)
	}
	if rec, err := o.WaitForFunction(ctx, rpc.WaitRequest{ID: running.ID, Timeout: 0}); err != nil || rec.Finished {
		t.Errorf("observer WaitForFunction = %+v, %v; want the running record", rec, err)
	}
	for _, tt := range []struct {
		proc string
		do   func() error
	}{
		{"StartFunction", func() error {
			_, err := o.StartFunction(ctx, rpc.StartRequest{FnName: "echo"})
			return err
		}},
		{"CancelFunction", func() error { _, err := o.CancelFunction(ctx, running.ID); return err }},
		{"ReleaseFunction", func() error { return o.ReleaseFunction(ctx, running.ID) }},
	} {
		err := tt.do()
		if !errors.Is(err, rpc.ErrForbidden) || !strings.Contains(err.Error(), "role observer") {
			t.Errorf("observer %s = %v; want forbidden, naming the role", tt.proc, err)
		}
	}

	// The metrics are a read: an observer (a monitoring system) may
	// scrape them over the same TLS.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ocfg}}
	resp, err := hc.Get("https://" + n.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("observer GET /metrics: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("observer GET /metrics = %s, want 200", resp.Status)
	}
	put, err := http.NewRequest(http.MethodPut, "https://"+n.Addr()+rpc.PathStartFunction, strings.NewReader(`{"fn_name":"echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Do(put)
	if err != nil {
		t.Fatalf("observer PUT StartFunction over net/http: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("observer StartFunction over net/http = %s, want 403", resp.Status)
	}

	if _, err := m.CancelFunction(ctx, running.ID); err != nil {
		t.Errorf("master CancelFunction: %v", err)
	}
	if !strings.Contains(n.Log(), `msg="refused a request" path=/StartFunction`) {
		t.Errorf("noded logged no refusal of the observer's StartFunction:\n%s", n.Log())
	}
}

// TestTLSCommandLine runs the noderpc command in-process with real
// certificates: a master's call succeeds, an observer's is refused.
func TestTLSCommandLine(t *testing.T) {
	p := nodetest.NewPKI(t)
	n := startTLS(t, p, "localhost")
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "master1")
	oCrt, oKey := p.Issue(t, rpc.RoleObserver, "observer1")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := tools.Run(context.Background(), args, nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := run("--cert", mCrt, "--key", mKey, "--ca", p.CA(), "call", n.Addr(), "echo", `[1,2]`); code != tools.ExitOK || out != "[1,2]\n" {
		t.Errorf("noderpc call echo as master = %d, %q, %q; want 0, [1,2]", code, out, errs)
	}
	// The environment is the operator's way not to type the files.
	t.Setenv(tools.EnvCert, oCrt)
	t.Setenv(tools.EnvKey, oKey)
	t.Setenv(tools.EnvCA, p.CA())
	if code, out, errs := run("version", n.Addr()); code != tools.ExitOK || !strings.Contains(out, "PROTOCOL") {
		t.Errorf("noderpc version as observer (from the environment) = %d, %q, %q; want 0 and the version", code, out, errs)
	}
	if code, _, errs := run("call", n.Addr(), "echo", `1`); code != tools.ExitFailed || !strings.Contains(errs, "forbidden") {
		t.Errorf("noderpc call as observer = %d, %q; want 1 and forbidden", code, errs)
	}
}

func TestTLSClientChecksNodeIdentity(t *testing.T) {
	p := nodetest.NewPKI(t)
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "master1")
	cfg, err := master.LoadTLS(mCrt, mKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, port, _ := net.SplitHostPort(startTLS(t, p, "node-b").Addr())

	// The client calls node A, "localhost"; the process answering there
	// presents node B's certificate, valid and of the same CA.
	start := time.Now()
	_, err = client(t, net.JoinHostPort("localhost", port), cfg).Version(ctx)
	var cerr *master.CertificateError
	var hostErr x509.HostnameError
	if !errors.As(err, &cerr) || cerr.ByNode || !errors.As(err, &hostErr) {
		t.Fatalf("Version of localhost:%s served with node-b's certificate = %v; want the client to refuse the node's certificate for its name", port, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refusing the node's certificate took %s; want no retry", took)
	}

	// The right node, under the same name, is accepted.
	_, portA, _ := net.SplitHostPort(startTLS(t, p, "localhost").Addr())
	if _, err := client(t, net.JoinHostPort("localhost", portA), cfg).Version(ctx); err != nil {
		t.Errorf("Version of localhost:%s served with localhost's certificate: %v", portA, err)
	}

	// A node whose certificate is of another CA is refused too.
	other := nodetest.NewPKI(t)
	_, portX, _ := net.SplitHostPort(startTLS(t, other, "localhost").Addr())
	_, err = client(t, net.JoinHostPort("localhost", portX), cfg).Version(ctx)
	if !errors.As(err, &cerr) || cerr.ByNode {
		t.Errorf("Version of a node of another CA = %v; want the client to refuse its certificate", err)
	}
}

// serialOf makes a new TLS connection to addr and returns the serial of
// the certificate the node presents.
func serialOf(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func serialOfFile(t *testing.T, crt string) *big.Int {
	t.Helper()
	return nodetest.LoadCert(t, crt).SerialNumber
}

// waitForSerial polls new handshakes until the node presents want.
func waitForSerial(t *testing.T, addr string, cfg *tls.Config, want *big.Int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := serialOf(t, addr, cfg)
		if got.Cmp(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("new handshakes present serial %x 10s after SIGHUP, want %x", got, want)
		}
		select {
		case <-time.After(20 * time.Millisecond):
			// Polling: SIGHUP gives no signal back of its reload but the
			// handshakes themselves.
		case <-t.Context().Done():
			return
		}
	}
}

// TestTLSRotationUnderLoad replaces the node's certificate with the tool
// while calls run, on fresh connections and on kept-alive ones, and sends
// SIGHUP: no call fails, and new handshakes present the new certificate.
// A broken file is refused and the certificate in force stays.
func TestTLSRotationUnderLoad(t *testing.T) {
	p := nodetest.NewPKI(t)
	tlsFiles := p.NodeTLS(t, "localhost")
	crt := tlsFiles.Cert
	n := nodetest.Start(t, nodetest.Options{TLS: tlsFiles})
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "master1")
	cfg, err := master.LoadTLS(mCrt, mKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	hsCfg := cfg.Clone()
	hsCfg.ServerName = "localhost"

	var (
		calls, failures atomic.Int64
		firstErr        atomic.Value
		stop            = make(chan struct{})
		wg              sync.WaitGroup
	)
	kept := client(t, n.Addr(), cfg)
	loop := func(fresh bool) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := kept
			if fresh {
				// A client per call: every call makes a new handshake.
				var err error
				if c, err = newClient(n.Addr(), cfg); err != nil {
					panic(err) // the address and options are those of kept
				}
			}
			arg := json.RawMessage(fmt.Sprintf("%d", i))
			res, err := c.Call(context.Background(), "echo", arg, master.CallOptions{})
			calls.Add(1)
			if err == nil && string(res.Result) != string(arg) {
				err = fmt.Errorf("echo %s answered %s", arg, res.Result)
			}
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			if fresh {
				c.Close()
			}
		}
	}
	for i := range 6 {
		wg.Add(1)
		go loop(i%2 == 0)
	}
	// callsPast waits until the load has made more calls, so each
	// rotation happens under load.
	callsPast := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for calls.Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling a counter of the load
		}
	}

	serials := []*big.Int{serialOfFile(t, crt)}
	for round := range 3 {
		callsPast(calls.Load() + 20)
		p.Issue(t, rpc.RoleNode, "localhost")
		if err := n.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		want := serialOfFile(t, crt)
		waitForSerial(t, n.Addr(), hsCfg, want)
		for _, old := range serials {
			if old.Cmp(want) == 0 {
				t.Fatalf("round %d: the tool issued serial %x again", round, want)
			}
		}
		serials = append(serials, want)
	}

	// A broken certificate file is refused; the one in force stays.
	callsPast(calls.Load() + 20)
	if err := os.WriteFile(crt, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n.AwaitLogLine(t, "certificates not reloaded, the previous ones stay in use")
	if got, want := serialOf(t, n.Addr(), hsCfg), serials[len(serials)-1]; got.Cmp(want) != 0 {
		t.Errorf("after a refused reload, handshakes present serial %x, want the previous %x", got, want)
	}
	callsPast(calls.Load() + 20)
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d calls failed during rotation; first: %v", f, calls.Load(), firstErr.Load())
	}
	t.Logf("%d calls through 3 rotations and a refused one, none failed", calls.Load())
}

func TestTLSStartRefusals(t *testing.T) {
	p := nodetest.NewPKI(t)
	crt, key := p.Issue(t, rpc.RoleNode, "node1")
	mCrt, mKey := p.Issue(t, rpc.RoleMaster, "master1")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"neither certificates nor --insecure", nil, "pass --cert FILE --key FILE --client-ca FILE"},
		{"--insecure on 0.0.0.0", []string{"--insecure", "--listen", "0.0.0.0:0"}, "only served on loopback"},
		{"--insecure with certificates", []string{"--insecure", "--cert", crt, "--key", key, "--client-ca", p.CA()}, "drop one or the other"},
		{"key of another certificate", []string{"--cert", crt, "--key", mKey, "--client-ca", p.CA()}, "private key does not match public key"},
		{"master certificate to serve with", []string{"--cert", mCrt, "--key", mKey, "--client-ca", p.CA()}, "is a master certificate; this daemon serves with a node certificate"},
		{"CA file without a certificate", []string{"--cert", crt, "--key", key, "--client-ca", key}, "holds no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, out := runNoded(t, append([]string{"--config", "", "--listen", "127.0.0.1:0"}, tt.args...)...)
			if status != 2 || !strings.Contains(out, tt.want) {
				t.Errorf("noded %q = exit %d, %q; want exit 2 saying %q", tt.args, status, out, tt.want)
			}
		})
	}
	if status, out := runNoded(t, "--config", "", "--check-config", "--cert", crt, "--key", key, "--client-ca", p.CA()); status != 0 || !strings.Contains(out, "configuration is valid") {
		t.Errorf("noded --check-config with good certificates = exit %d, %q; want valid", status, out)
	}
}

// BenchmarkTLSHandshake measures a full TLS 1.3 handshake with mutual
// ECDSA P-256 certificates against a real noded: what a master pays per
// new connection (keep-alive pays it once per connection).
func BenchmarkTLSHandshake(b *testing.B) {
	p := nodetest.NewPKI(b)
	n := startTLS(b, p, "localhost")
	mCrt, mKey := p.Issue(b, rpc.RoleMaster, "m")
	cfg, err := master.LoadTLS(mCrt, mKey, p.CA())
	if err != nil {
		b.Fatal(err)
	}
	cfg.ServerName = "localhost"
	req := []byte("GET " + rpc.PathVersion + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
	buf := make([]byte, 4096)
	b.ResetTimer()
	for b.Loop() {
		conn, err := tls.Dial("tcp", n.Addr(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		// A request proves the node accepted the client certificate,
		// which in TLS 1.3 it checks after the client's side is done.
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
