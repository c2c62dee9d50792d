package masterd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// serve runs a Daemon of cfg (its Listen and StateDir filled in) in this
// process on a loopback port until the test ends, and returns its base
// URL.
func serve(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	cfg.MaxSessionTimeout = max(cfg.MaxSessionTimeout, cfg.SessionTimeout)
	cfg.MaxConns, cfg.HeadTimeout, cfg.LogFormat, cfg.LogLevel = DefaultMaxConns, DefaultHeadTimeout, "text", "info"
	runInTest(t, cfg, Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	return cfg.advertised(cfg.Listen)
}

// runInTest runs a masterd of cfg and opts in the test's process until
// the test ends.
func runInTest(t *testing.T, cfg Config, opts Options) {
	t.Helper()
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// call sends method path with body and returns the status, the decoded
// error kind (if any), the group version header and the body.
func call(t *testing.T, c *http.Client, base, method, path string, body []byte) (int, rpc.Kind, uint64, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	v, err := strconv.ParseUint(resp.Header.Get(rpc.HeaderGroupVersion), 10, 64)
	if err != nil {
		t.Errorf("%s %s answered %d without a valid %s: %q", method, path, resp.StatusCode, rpc.HeaderGroupVersion, resp.Header.Get(rpc.HeaderGroupVersion))
	}
	var e rpc.ErrorResponse
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(out, &e); err != nil || e.Error == nil {
			t.Errorf("%s %s answered %d with a body that is no error object: %s", method, path, resp.StatusCode, out)
			return resp.StatusCode, "", v, out
		}
		return resp.StatusCode, e.Error.Kind, v, out
	}
	return resp.StatusCode, "", v, out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeInsecure runs the whole exchange over real HTTP: hello,
// renewal, list, configuration, leave; and refuses bad requests with
// their kinds, every answer with the group version.
func TestServeInsecure(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}

	status, kind, v, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, helloOf("n1", "b1")))
	var s rpc.Session
	if status != 200 || json.Unmarshal(body, &s) != nil || s.ID == "" || v != s.GroupVersion || v != 1 {
		t.Fatalf("hello = %d %s, header version %d, %s; want 200, a session, version 1 in both", status, kind, v, body)
	}
	if len(s.Masters) != 1 || s.Masters[0] != base {
		t.Errorf("hello: masters %v, want [%s]", s.Masters, base)
	}
	renew := rpc.RenewRequest{Node: "n1", Session: s.ID, GroupVersion: s.GroupVersion, ConfigVersion: s.ConfigVersion}
	if status, kind, _, body = call(t, c, base, "PUT", rpc.PathRenew, mustJSON(t, renew)); status != 200 {
		t.Fatalf("renew = %d %s %s, want 200", status, kind, body)
	}
	status, _, _, body = call(t, c, base, "GET", rpc.PathListNodes, nil)
	var l rpc.ListNodesResponse
	if status != 200 || json.Unmarshal(body, &l) != nil || len(l.Nodes) != 1 || l.Nodes[0].State != rpc.NodeUp || l.Nodes[0].BootID != "b1" {
		t.Fatalf("list = %d %s, want n1 up", status, body)
	}
	set := rpc.SetConfigRequest{Set: rpc.Config{"color": []byte(`"blue"`)}}
	if status, kind, _, body = call(t, c, base, "PUT", rpc.PathSetConfig, mustJSON(t, set)); status != 200 || !strings.Contains(string(body), `"blue"`) {
		t.Fatalf("set config = %d %s %s", status, kind, body)
	}
	status, _, _, body = call(t, c, base, "PUT", rpc.PathGetConfig, []byte(`{"node":"n1"}`))
	var cfg rpc.ConfigResponse
	if status != 200 || json.Unmarshal(body, &cfg) != nil || string(cfg.Effective["color"]) != `"blue"` {
		t.Errorf("get config of n1 = %d %s, want the group's color in its effective configuration", status, body)
	}
	if status, kind, _, body = call(t, c, base, "PUT", rpc.PathLeave, mustJSON(t, rpc.LeaveRequest{Node: "n1", Session: s.ID})); status != 200 {
		t.Fatalf("leave = %d %s %s", status, kind, body)
	}
	status, _, v, body = call(t, c, base, "PUT", rpc.PathGetNode, []byte(`{"node":"n1"}`))
	var n rpc.Node
	if status != 200 || json.Unmarshal(body, &n) != nil || n.State != rpc.NodeDown || v != 2 {
		t.Errorf("get node after the leave = %d, version %d, %s; want n1 down at version 2", status, v, body)
	}

	for _, tc := range []struct {
		name, method, path string
		body               []byte
		status             int
		kind               rpc.Kind
	}{
		{"malformed JSON", "PUT", rpc.PathHello, []byte(`{"node":`), 400, rpc.KindBadRequest},
		{"unknown field", "PUT", rpc.PathHello, []byte(`{"node":"n1","url":"http://x:1","boot_id":"b","nope":1}`), 400, rpc.KindBadRequest},
		{"missing boot id", "PUT", rpc.PathHello, []byte(`{"node":"n1","url":"http://x:1"}`), 400, rpc.KindBadRequest},
		{"empty body", "PUT", rpc.PathRenew, nil, 400, rpc.KindBadRequest},
		{"unknown session", "PUT", rpc.PathRenew, []byte(`{"node":"n1","session":"gone"}`), 404, rpc.KindUnknownSession},
		{"unknown node", "PUT", rpc.PathGetNode, []byte(`{"node":"nobody"}`), 404, rpc.KindUnknownNode},
		{"no node named", "PUT", rpc.PathGetNode, []byte(`{}`), 400, rpc.KindBadRequest},
		{"set nothing", "PUT", rpc.PathSetConfig, []byte(`{"node":"n1"}`), 400, rpc.KindBadRequest},
		{"wrong method", "GET", rpc.PathHello, nil, 400, rpc.KindBadRequest},
		{"no such path", "GET", "/Nope", nil, 400, rpc.KindBadRequest},
		{"GET with a body", "GET", rpc.PathListNodes, []byte(`{}`), 400, rpc.KindBadRequest},
	} {
		status, kind, _, body := call(t, c, base, tc.method, tc.path, tc.body)
		if status != tc.status || kind != tc.kind {
			t.Errorf("%s: %s %s = %d %s %s; want %d %s", tc.name, tc.method, tc.path, status, kind, clipped(body), tc.status, tc.kind)
		}
	}
}

// TestOversizeBody checks that a body over its procedure's bound is
// refused from the declared length alone, before a byte of it is read.
func TestOversizeBody(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	for _, tc := range []struct {
		path string
		size int
	}{{rpc.PathRenew, smallBody + 1}, {rpc.PathHello, maxHelloBody + 1}, {rpc.PathSetConfig, maxConfigBody + 1}} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n", tc.path, tc.size)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("PUT %s of %d bytes: %v", tc.path, tc.size, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		var e rpc.ErrorResponse
		if resp.StatusCode != 413 || json.Unmarshal(body, &e) != nil || e.Error.Kind != rpc.KindTooLarge || resp.Header.Get(rpc.HeaderGroupVersion) == "" {
			t.Errorf("PUT %s of %d bytes = %d %s %s; want 413 too_large with the group version", tc.path, tc.size, resp.StatusCode, resp.Header, body)
		}
	}
}

// httpsHelloOf is helloOf at an https:// URL, the only scheme masterd
// serving TLS takes.
func httpsHelloOf(name, boot string) *rpc.HelloRequest {
	req := helloOf(name, boot)
	req.URL = "https://127.0.0.1:1811"
	return req
}

func clipped(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// nodeBootID asks node its boot id, as a master client with opts.
func nodeBootID(t *testing.T, node *nodetest.Node, opts master.Options) string {
	t.Helper()
	mc, err := master.New(node.Addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	v, err := mc.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v.BootID
}

// TestCheckNode checks that masterd calls a real noded at the URL its
// hello advertised, and records whether the boot id matches.
func TestCheckNode(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	base := serve(t, Config{Insecure: true, CheckNodes: true})
	bootID := nodeBootID(t, node, master.Options{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	for _, tc := range []struct {
		name, url, boot string
		reachable       bool
		problem         string
	}{
		{"good", node.URL(), bootID, true, ""},
		{"another boot", node.URL(), "not-" + bootID, false, "boot id"},
		{"nobody there", "http://127.0.0.1:1", "b", false, "unreachable"},
	} {
		req := helloOf(strings.ReplaceAll(tc.name, " ", "-"), tc.boot)
		req.URL = tc.url
		if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
			t.Fatalf("hello = %d %s %s", status, kind, body)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, _, _, body := call(t, c, base, "PUT", rpc.PathGetNode, mustJSON(t, rpc.NodeRequest{Node: req.Node}))
			var n rpc.Node
			if err := json.Unmarshal(body, &n); err != nil {
				t.Fatal(err)
			}
			if n.Reachable || n.Problem != "" {
				if n.Reachable != tc.reachable || !strings.Contains(n.Problem, tc.problem) {
					t.Errorf("%s: reachable %v, problem %q; want %v, %q", tc.name, n.Reachable, n.Problem, tc.reachable, tc.problem)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not checked within 30s", tc.name)
			}
			time.Sleep(20 * time.Millisecond) // the check runs on its own; nothing to wait on
		}
	}
}

// TestTLSRoles checks masterd's mutual TLS: a node may speak only for
// the node its certificate names, and only masters and observers read,
// only masters write configuration.
func TestTLSRoles(t *testing.T) {
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	base := serve(t, Config{Cert: crt, Key: key, ClientCA: pki.CA()})
	client := func(role rpc.Role, name string) *http.Client { return tlsClient(t, pki, role, name) }
	n1, observer, admin := client(rpc.RoleNode, "n1"), client(rpc.RoleObserver, "o1"), client(rpc.RoleMaster, "m2")

	plain := &http.Client{Timeout: 20 * time.Second}
	if status, kind, _, body := call(t, plain, "http"+strings.TrimPrefix(base, "https"), "GET", rpc.PathListNodes, nil); status != 400 || kind != rpc.KindTLSMismatch {
		t.Errorf("plain HTTP to masterd serving TLS = %d %s %s; want 400 tls_mismatch", status, kind, body)
	}

	status, kind, _, body := call(t, n1, base, "PUT", rpc.PathHello, mustJSON(t, httpsHelloOf("n2", "b")))
	if status != 403 || kind != rpc.KindForbidden || !strings.Contains(string(body), `\"n1\"`) || !strings.Contains(string(body), `\"n2\"`) {
		t.Errorf("hello for n2 with n1's certificate = %d %s %s; want 403 forbidden naming both", status, kind, body)
	}
	if status, kind, _, body = call(t, n1, base, "PUT", rpc.PathHello, mustJSON(t, httpsHelloOf("n1", "b"))); status != 200 {
		t.Errorf("hello for n1 with its certificate = %d %s %s; want 200", status, kind, body)
	}
	for _, tc := range []struct {
		who    string
		c      *http.Client
		method string
		path   string
		body   string
		status int
	}{
		{"node", n1, "GET", rpc.PathListNodes, "", 403},
		{"observer", observer, "GET", rpc.PathListNodes, "", 200},
		{"observer", observer, "PUT", rpc.PathSetConfig, `{"set":{"a":1}}`, 403},
		{"observer", observer, "PUT", rpc.PathHello, string(mustJSON(t, httpsHelloOf("o1", "b"))), 403},
		{"master", admin, "PUT", rpc.PathSetConfig, `{"set":{"a":1}}`, 200},
		{"master", admin, "PUT", rpc.PathGetNode, `{"node":"n1"}`, 200},
	} {
		if status, kind, _, body := call(t, tc.c, base, tc.method, tc.path, []byte(tc.body)); status != tc.status {
			t.Errorf("%s: %s %s = %d %s %s; want %d", tc.who, tc.method, tc.path, status, kind, body, tc.status)
		}
	}
}

// TestCheckNodeTLS checks that masterd calls a node serving TLS with its
// master certificate, which the node accepts.
func TestCheckNodeTLS(t *testing.T) {
	pki := nodetest.NewPKI(t)
	node := nodetest.Start(t, nodetest.Options{TLS: pki.NodeTLS(t, "n1")})
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	base := serve(t, Config{Cert: crt, Key: key, ClientCA: pki.CA(), CheckNodes: true})
	ncrt, nkey := pki.Issue(t, rpc.RoleNode, "n1")
	cfg, err := master.LoadTLS(ncrt, nkey, pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	adminCfg, err := master.LoadTLS(crt, key, pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	bootID := nodeBootID(t, node, master.Options{TLS: adminCfg})
	req := helloOf("n1", bootID)
	req.URL = node.URL()
	if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
		t.Fatalf("hello = %d %s %s", status, kind, body)
	}
	admin := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: adminCfg}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, _, body := call(t, admin, base, "PUT", rpc.PathGetNode, []byte(`{"node":"n1"}`))
		var n rpc.Node
		if err := json.Unmarshal(body, &n); err != nil {
			t.Fatal(err)
		}
		if n.Reachable {
			return
		}
		if n.Problem != "" {
			t.Fatalf("masterd could not call the node over TLS: %s", n.Problem)
		}
		if time.Now().After(deadline) {
			t.Fatal("the node was not checked within 30s")
		}
		time.Sleep(20 * time.Millisecond) // the check runs on its own; nothing to wait on
	}
}

// TestRefusesBadNamesAndURLs checks that a node name that could not be a
// certificate's common name, or that the store cannot hold, a URL no
// master could call, and a boot id or version with control characters
// (printed as they are by noderpc nodes) are refused as bad requests
// before anything is written, and that nothing of them is listed.
func TestRefusesBadNamesAndURLs(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	long := strings.Repeat("x", 40<<10)
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{
		{"name with a newline", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "a\nb", URL: "http://127.0.0.1:1", BootID: "b"})},
		{"name with a space", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "a b", URL: "http://127.0.0.1:1", BootID: "b"})},
		{"name of 40 KB", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: long, URL: "http://127.0.0.1:1", BootID: "b"})},
		{"URL that is no URL", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "not a url", BootID: "b"})},
		{"URL of another scheme", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "ftp://127.0.0.1:1", BootID: "b"})},
		{"URL without a host", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "http://", BootID: "b"})},
		{"version with an escape", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "http://127.0.0.1:1", BootID: "b", Version: "1\x1b]0;owned\x07"})},
		{"boot id with a newline", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "http://127.0.0.1:1", BootID: "b\nINFO forged"})},
		{"boot id of 40 KB", rpc.PathHello, mustJSON(t, rpc.HelloRequest{Node: "n1", URL: "http://127.0.0.1:1", BootID: long})},
		{"configuration of a 40 KB name", rpc.PathSetConfig, mustJSON(t, rpc.SetConfigRequest{Node: long, Set: rpc.Config{"k": []byte("1")}})},
		{"configuration of a name with a newline", rpc.PathSetConfig, mustJSON(t, rpc.SetConfigRequest{Node: "a\nb", Set: rpc.Config{"k": []byte("1")}})},
	} {
		status, kind, _, body := call(t, c, base, "PUT", tc.path, tc.body)
		if status != 400 || kind != rpc.KindBadRequest || len(body) > 1000 {
			t.Errorf("%s: PUT %s = %d %s %s; want 400 bad_request with a short message", tc.name, tc.path, status, kind, clipped(body))
		}
	}
	_, _, v, body := call(t, c, base, "GET", rpc.PathListNodes, nil)
	var l rpc.ListNodesResponse
	if json.Unmarshal(body, &l) != nil || len(l.Nodes) != 0 || v != 0 {
		t.Errorf("list after the refusals = version %d, %s; want no node at version 0", v, clipped(body))
	}
}

// TestTLSNodeSpeaksForItselfOnly checks that a node certificate cannot
// renew or end another node's session, even with its session id.
func TestTLSNodeSpeaksForItselfOnly(t *testing.T) {
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	base := serve(t, Config{Cert: crt, Key: key, ClientCA: pki.CA()})
	n1, n2 := tlsClient(t, pki, rpc.RoleNode, "n1"), tlsClient(t, pki, rpc.RoleNode, "n2")
	status, kind, _, body := call(t, n1, base, "PUT", rpc.PathHello, mustJSON(t, httpsHelloOf("n1", "b")))
	var s rpc.Session
	if status != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("hello of n1 = %d %s %s", status, kind, body)
	}
	renew := mustJSON(t, rpc.RenewRequest{Node: "n1", Session: s.ID})
	leave := mustJSON(t, rpc.LeaveRequest{Node: "n1", Session: s.ID})
	for _, tc := range []struct {
		path string
		body []byte
	}{{rpc.PathRenew, renew}, {rpc.PathLeave, leave}} {
		if status, kind, _, body := call(t, n2, base, "PUT", tc.path, tc.body); status != 403 || kind != rpc.KindForbidden {
			t.Errorf("%s of n1's session with n2's certificate = %d %s %s; want 403 forbidden", tc.path, status, kind, body)
		}
	}
	if status, kind, _, body := call(t, n1, base, "PUT", rpc.PathRenew, renew); status != 200 {
		t.Errorf("n1's renewal after the attempts = %d %s %s; want 200, its session untouched", status, kind, body)
	}
}

// TestAmbiguousFramingRefused: a request whose body two readers could
// frame differently (a transfer coding other than chunked, or one beside
// a Content-Length) is refused from its head and its connection closed,
// so that what a proxy would take for its body is never served as a
// request; fasthttp alone ignored an identity coding's body and read it
// as the next request.
func TestAmbiguousFramingRefused(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	hidden := "GET " + rpc.PathListNodes + " HTTP/1.1\r\nHost: m\r\n\r\n"
	for _, framing := range []string{
		fmt.Sprintf("Transfer-Encoding: identity\r\nContent-Length: %d\r\n", len(hidden)),
		"Transfer-Encoding: identity\r\n",
		fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding: chunked\r\n", len(hidden)+5),
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := hidden
		if strings.Contains(framing, "chunked") {
			body = "0\r\n\r\n" + hidden
		}
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: m\r\n%s\r\n%s", rpc.PathRenew, framing, body)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%q: %v", framing, err)
		}
		b, _ := io.ReadAll(resp.Body)
		var e rpc.ErrorResponse
		if resp.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Error.Kind != rpc.KindBadRequest || !strings.Contains(e.Error.Message, "Transfer-Encoding") {
			t.Errorf("%q: answered %d %s, want 400 bad_request naming Transfer-Encoding", framing, resp.StatusCode, b)
		}
		if more, err := r.ReadByte(); err == nil {
			t.Errorf("%q: the connection went on after the refusal (next byte %q): the body was read as a request", framing, more)
		}
		c.Close()
	}
}

// tlsClient is an HTTPS client holding a certificate of pki's CA for
// role and name.
func tlsClient(t *testing.T, pki *nodetest.PKI, role rpc.Role, name string) *http.Client {
	t.Helper()
	crt, key := pki.Issue(t, role, name)
	cfg, err := master.LoadTLS(crt, key, pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// TestBareLFHead: masterd refuses at once a first request head whose
// lines end with a bare LF, which fasthttp would wait on until the head
// timeout, saying why.
func TestBareLFHead(t *testing.T) {
	base := serve(t, Config{Insecure: true, HeadTimeout: 5 * time.Minute})
	c := nodetest.DialFrom(t, "127.0.0.1", strings.TrimPrefix(base, "http://"))
	fmt.Fprintf(c, "GET %s HTTP/1.1\nHost: m\n\n", rpc.PathListNodes)
	status, e, body := nodetest.ReadAnswerBody(t, c, 20*time.Second)
	if status != http.StatusBadRequest || e == nil || e.Kind != rpc.KindBadRequest || !strings.Contains(e.Message, "bare LF") || !strings.Contains(e.Message, "masterd") {
		t.Errorf("a bare-LF head answered %d %s, want 400 bad_request about the bare LF", status, body)
	}
}
