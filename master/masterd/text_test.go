package masterd

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// errorMessage is the message of the error answer body.
func errorMessage(body []byte) string {
	var e rpc.ErrorResponse
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Message
}

// listed returns the nodes masterd at base lists.
func listed(t *testing.T, c *http.Client, base string) []rpc.Node {
	t.Helper()
	status, _, _, body := call(t, c, base, "GET", rpc.PathListNodes, nil)
	var l rpc.ListNodesResponse
	if status != 200 || json.Unmarshal(body, &l) != nil {
		t.Fatalf("ListNodes = %d %s", status, clipped(body))
	}
	return l.Nodes
}

// TestHelloURLBoundAndShape checks that a hello's URL is refused, with a
// short bad_request, when it is longer than rpc.MaxNodeURLLen or of a
// shape master.Cluster does not call (no port, a path, a query, ...), and
// that every URL masterd takes is one its own client calls: a hostile
// node once stored URLs of 7 MiB, logged twice a hello, which made
// ListNodes larger than the client takes.
func TestHelloURLBoundAndShape(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	for _, tc := range []struct{ name, url string }{
		{"URL of 7 MiB", "http://127.0.0.1:1/" + strings.Repeat("a", 7<<20)},
		{"host of 3000 bytes", "http://" + strings.Repeat("a", 3000) + ":1"},
		{"no port", "http://127.0.0.1"},
		{"empty port", "http://127.0.0.1:"},
		{"port 0", "http://127.0.0.1:0"},
		{"port above 65535", "http://127.0.0.1:65536"},
		{"no host", "http://:1811"},
		{"a path", "http://127.0.0.1:1811/x"},
		{"a query", "http://127.0.0.1:1811?a=b"},
		{"an empty query", "http://127.0.0.1:1811/?"},
		{"a fragment", "http://127.0.0.1:1811#f"},
		{"an empty fragment", "http://127.0.0.1:1811/#"},
		{"a user", "http://u:p@127.0.0.1:1811"},
		{"opaque", "http:127.0.0.1:1811"},
		{"a C1 control", "http://127.0.0.1:1811\u009b"},
		{"an escaped C1 control in the host", "http://a%c2%9b:1811"},
	} {
		req := rpc.HelloRequest{Node: "n1", URL: tc.url, BootID: "b"}
		status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req))
		if status != 400 || kind != rpc.KindBadRequest || len(body) > 5000 || !strings.Contains(errorMessage(body), "url") {
			t.Errorf("%s: hello = %d %s %s; want 400 bad_request naming the url, short", tc.name, status, kind, clipped(body))
		}
	}
	if l := listed(t, c, base); len(l) != 0 {
		t.Fatalf("listed after the refusals: %+v", l)
	}

	taken := []string{
		"http://127.0.0.1:1811",
		"http://127.0.0.1:1812/",
		"HTTP://127.0.0.1:1813",
		"http://[::1]:1814",
		"http://localhost:65535",
		"http://" + strings.Repeat("a", 63) + ".example:1815",
	}
	for i, u := range taken {
		req := rpc.HelloRequest{Node: "n" + string(rune('a'+i)), URL: u, BootID: "b"}
		if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
			t.Errorf("hello at %s = %d %s %s; want it taken", u, status, kind, clipped(body))
		}
	}
	cl, err := master.NewCluster([]string{base}, master.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := cl.UpClients(context.Background())
	if err != nil || len(clients) != len(taken) {
		t.Errorf("UpClients() = %d clients, %v; want one for each of the %d URLs masterd took", len(clients), err, len(taken))
	}
}

// TestHelloTextRule checks that a hello whose node's own facts (name,
// url, boot_id, version), which masterd stores and noderpc prints, hold
// a control character (C0, DEL or C1) or a format character that
// reorders or hides text (U+202E, U+200B, U+FEFF, ...) is refused with a
// bad_request naming the field, and nothing of it listed; and that such
// characters in what it reports of functions and calls are stored
// escaped instead.
func TestHelloTextRule(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	ok := func() rpc.HelloRequest {
		return rpc.HelloRequest{
			Node: "n1", URL: "http://127.0.0.1:1811", BootID: "b", Version: "v1",
			Functions: []rpc.Function{{Name: "echo", Kind: rpc.FunctionBuiltin, Runnable: true}, {Name: "f", Kind: rpc.FunctionExecutable, Problem: "café: no #! line"}},
			Calls:     []rpc.CallSummary{{ID: "c1", FnName: "echo", State: "running", RequestID: "r1"}, {ID: "c2", FnName: "echo", State: "failed", ErrorKind: rpc.KindInternal}},
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*rpc.HelloRequest)
	}{
		{"node name", func(r *rpc.HelloRequest) { r.Node = "evil\u202egnp.exe" }},
		{"node name", func(r *rpc.HelloRequest) { r.Node = "n\u200b1" }},
		{"node name", func(r *rpc.HelloRequest) { r.Node = "\ufeffn1" }},
		{"url", func(r *rpc.HelloRequest) { r.URL = "http://127.0.0.1:1811/\u009b2J" }},
		{"boot_id", func(r *rpc.HelloRequest) { r.BootID = "b\u202e" }},
		{"version", func(r *rpc.HelloRequest) { r.Version = "1\u009b31m" }},
		{"version", func(r *rpc.HelloRequest) { r.Version = "1\x7f" }},
	} {
		req := ok()
		tc.edit(&req)
		status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req))
		if status != 400 || kind != rpc.KindBadRequest || !strings.HasPrefix(errorMessage(body), tc.field+" ") {
			t.Errorf("%s: hello = %d %s %s; want 400 bad_request naming %s", tc.field, status, kind, clipped(body), tc.field)
		}
	}
	if l := listed(t, c, base); len(l) != 0 {
		t.Fatalf("listed after the refusals: %+v", l)
	}
	// Printable text outside ASCII stays welcome.
	if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, ok())); status != 200 {
		t.Errorf("an ordinary hello = %d %s %s", status, kind, clipped(body))
	}

	// What a node reports of its functions and calls is escaped, not
	// refused: a call's request ID is its caller's and a function's name
	// a file's, and refusing the hello would let either keep the node
	// out of the group.
	req := ok()
	req.Node = "n2"
	req.Functions[1].Name = "f\x1b[2J"
	req.Functions[0].Kind = "go\x1b]0;owned\x07"
	req.Functions[1].Problem = "fine\u2066hidden\u2069"
	req.Calls[0].RequestID = "r\u202e1"
	req.Calls[1].State = "failed\nINFO forged"
	if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
		t.Fatalf("a hello reporting control characters in its functions and calls = %d %s %s, want it taken", status, kind, clipped(body))
	}
	n2, found := listOf(t, c, base)["n2"]
	if !found {
		t.Fatal("n2 is not listed after its hello")
	}
	want := []string{`f\x1b[2J`, `go\x1b]0;owned\a`, `fine\u2066hidden\u2069`}
	got := []string{n2.Functions[1].Name, string(n2.Functions[0].Kind), n2.Functions[1].Problem}
	status, _, _, body := call(t, c, base, "PUT", rpc.PathGetNode, []byte(`{"node":"n2"}`))
	var full rpc.Node
	if status != 200 || json.Unmarshal(body, &full) != nil || len(full.Calls) != 2 {
		t.Fatalf("GetNode n2 = %d %s", status, clipped(body))
	}
	want = append(want, `r\u202e1`, `failed\nINFO forged`)
	got = append(got, full.Calls[0].RequestID, string(full.Calls[1].State))
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stored %q, want the escaped %q", got[i], want[i])
		}
	}
}

// TestSetConfigTextRule checks that SetConfig, whose keys and values
// noderpc config get prints as they are, holds them to the rule of a
// hello, and that a value laid out over lines is kept compacted rather
// than refused or printed over several lines.
func TestSetConfigTextRule(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	for _, tc := range []struct{ name, body, field string }{
		{"key with an escape", `{"set":{"k\u001b[2J":1}}`, `key "k\x1b[2J"`},
		{"key with a bidi override", `{"set":{"k` + "\u202e" + `":1}}`, `key "k\u202e"`},
		{"deleted key with a newline", `{"delete":["k\nINFO forged"]}`, `deleted key "k\nINFO forged"`},
		{"value with a raw C1 control", `{"set":{"k":"a` + "\u009b" + `31m"}}`, `value of key "k"`},
		{"value with a zero-width space", `{"set":{"k":["a` + "\u200b" + `"]}}`, `value of key "k"`},
		{"node with a bidi override", `{"node":"n` + "\u202e" + `1","set":{"k":1}}`, `node name`},
	} {
		status, kind, _, body := call(t, c, base, "PUT", rpc.PathSetConfig, []byte(tc.body))
		if status != 400 || kind != rpc.KindBadRequest || !strings.HasPrefix(errorMessage(body), tc.field+" ") {
			t.Errorf("%s: SetConfig = %d %s %s; want 400 bad_request naming %s", tc.name, status, kind, clipped(body), tc.field)
		}
	}
	status, kind, _, body := call(t, c, base, "PUT", rpc.PathSetConfig, []byte("{\"set\":{\"k\":{\n\t\"a\": [1,\r\n 2],\n\"e\": \"\\u001b\"}}}"))
	var r rpc.ConfigResponse
	if status != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("SetConfig of a value over lines = %d %s %s", status, kind, clipped(body))
	}
	if got, want := string(r.Group["k"]), `{"a":[1,2],"e":"\u001b"}`; got != want {
		t.Errorf("value kept = %s; want %s", got, want)
	}
}

// TestHelloHTTPURLUnderTLS checks that masterd serving TLS refuses a
// hello whose URL is http://, with a bad_request naming the url: masters
// call nodes over mutual TLS, so no master could call the node there,
// and masterd checked it with a client in the clear. The same URL is
// taken from a node of a masterd run with --insecure.
func TestHelloHTTPURLUnderTLS(t *testing.T) {
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	base := serve(t, Config{Cert: crt, Key: key, ClientCA: pki.CA()})
	client := func(role rpc.Role, name string) *http.Client { return tlsClient(t, pki, role, name) }
	n1, admin := client(rpc.RoleNode, "n1"), client(rpc.RoleMaster, "m2")
	for _, u := range []string{"http://127.0.0.1:1811", "HTTP://127.0.0.1:1811/", "http://[::1]:1811"} {
		req := helloOf("n1", "b")
		req.URL = u
		status, kind, _, body := call(t, n1, base, "PUT", rpc.PathHello, mustJSON(t, req))
		if msg := errorMessage(body); status != 400 || kind != rpc.KindBadRequest || !strings.HasPrefix(msg, "url ") || !strings.Contains(msg, "https://") {
			t.Errorf("hello at %s to masterd serving TLS = %d %s %s; want 400 bad_request naming the url and asking for https://", u, status, kind, clipped(body))
		}
	}
	if l := listed(t, admin, base); len(l) != 0 {
		t.Fatalf("listed after the refusals: %+v", l)
	}
	req := helloOf("n1", "b")
	req.URL = "https://127.0.0.1:1811"
	if status, kind, _, body := call(t, n1, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
		t.Errorf("hello at %s = %d %s %s; want it taken", req.URL, status, kind, clipped(body))
	}

	insecure := serve(t, Config{Insecure: true})
	if status, kind, _, body := call(t, &http.Client{Timeout: 20 * time.Second}, insecure, "PUT", rpc.PathHello, mustJSON(t, helloOf("n1", "b"))); status != 200 {
		t.Errorf("hello at an http:// URL to masterd run with --insecure = %d %s %s; want it taken", status, kind, clipped(body))
	}
}

// TestHelloReportBounded checks that what a hello reports of the node's
// functions and calls is bounded in number and length, by clipping, not
// refusal: a busy node with 10,000 running calls and as many finished
// keeps them all; past maxReportedCalls the running calls and the most
// recent finished ones are kept; past maxReportedFunctions the first
// functions by name; and every string is clipped to its bound, ending in
// "...". masterd kept anything the 8 MiB body held, written whole at
// every hello and the functions listed in every ListNodes.
func TestHelloReportBounded(t *testing.T) {
	base := serve(t, Config{Insecure: true})
	c := &http.Client{Timeout: 20 * time.Second}
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// hello says hello for node with running and finished calls (the
	// finished first, as noded lists them oldest first) and fns
	// functions, and returns the node as GetNode has it.
	hello := func(node string, running, finished, fns int, edit func(*rpc.HelloRequest)) rpc.Node {
		t.Helper()
		req := helloOf(node, "b")
		for i := range finished {
			req.Calls = append(req.Calls, rpc.CallSummary{ID: fmt.Sprintf("f%d", i), FnName: "echo", State: rpc.StateSucceeded, StartedAt: started.Add(time.Duration(i) * time.Millisecond)})
		}
		for i := range running {
			req.Calls = append(req.Calls, rpc.CallSummary{ID: fmt.Sprintf("r%d", i), FnName: "sleep", State: rpc.StateRunning, RequestID: fmt.Sprintf("req-%d", i), StartedAt: started.Add(time.Hour)})
		}
		for i := range fns {
			req.Functions = append(req.Functions, rpc.Function{Name: fmt.Sprintf("fn%04d", i), Kind: rpc.FunctionExecutable, Runnable: true})
		}
		if edit != nil {
			edit(req)
		}
		if status, kind, _, body := call(t, c, base, "PUT", rpc.PathHello, mustJSON(t, req)); status != 200 {
			t.Fatalf("hello of %s with %d calls and %d functions = %d %s %s; want it taken", node, len(req.Calls), len(req.Functions), status, kind, clipped(body))
		}
		status, _, _, body := call(t, c, base, "PUT", rpc.PathGetNode, mustJSON(t, rpc.NodeRequest{Node: node}))
		var n rpc.Node
		if status != 200 || json.Unmarshal(body, &n) != nil {
			t.Fatalf("GetNode %s = %d %s", node, status, clipped(body))
		}
		return n
	}
	count := func(calls []rpc.NodeCall, prefix string) int {
		n := 0
		for _, c := range calls {
			if strings.HasPrefix(c.ID, prefix) {
				n++
			}
		}
		return n
	}

	busy := hello("busy", 10000, 10000, 100, nil)
	if r, f := count(busy.Calls, "r"), count(busy.Calls, "f"); r != 10000 || f != 10000 || len(busy.Functions) != 100 {
		t.Errorf("a busy node: %d running and %d finished calls, %d functions kept; want all: 10000, 10000, 100", r, f, len(busy.Functions))
	}

	over := hello("over", 12000, 13000, 1500, nil)
	if r, f := count(over.Calls, "r"), count(over.Calls, "f"); r != 12000 || f != maxReportedCalls-12000 {
		t.Errorf("12,000 running and 13,000 finished calls: kept %d running, %d finished; want every running one and %d finished", r, f, maxReportedCalls-12000)
	}
	if first := over.Calls[0].ID; first != fmt.Sprintf("f%d", 13000-(maxReportedCalls-12000)) {
		t.Errorf("oldest finished call kept = %s; want the most recent kept", first)
	}
	if len(over.Functions) != maxReportedFunctions || over.Functions[maxReportedFunctions-1].Name != fmt.Sprintf("fn%04d", maxReportedFunctions-1) {
		t.Errorf("1,500 functions: kept %d; want the first %d", len(over.Functions), maxReportedFunctions)
	}

	long := hello("long", 1, 1, 1, func(r *rpc.HelloRequest) {
		r.Functions[0].Name = strings.Repeat("é", 3000)
		r.Functions[0].Kind = rpc.FunctionKind(strings.Repeat("k", 3000))
		r.Functions[0].Problem = strings.Repeat("\x1b", 30000) // 4 bytes each once escaped
		r.Calls[0].ID = strings.Repeat("i", 5000)
		r.Calls[0].FnName = strings.Repeat("n", 5000)
		r.Calls[0].State = rpc.State(strings.Repeat("s", 5000))
		r.Calls[1].RequestID = strings.Repeat("q", 5000)
		r.Calls[1].ErrorKind = rpc.Kind(strings.Repeat("e", 5000))
	})
	fn, c0, c1 := long.Functions[0], long.Calls[0], long.Calls[1]
	for _, tc := range []struct {
		field, got string
		bound      int
	}{
		{"functions[0].name", fn.Name, maxReportedText},
		{"functions[0].kind", string(fn.Kind), maxReportedText},
		{"functions[0].problem", fn.Problem, maxReportedProblem},
		{"calls[0].id", c0.ID, maxReportedText},
		{"calls[0].fn_name", c0.FnName, maxReportedText},
		{"calls[0].state", string(c0.State), maxReportedText},
		{"calls[1].request_id", c1.RequestID, maxReportedText},
		{"calls[1].error_kind", string(c1.ErrorKind), maxReportedText},
	} {
		if len(tc.got) > tc.bound || len(tc.got) < tc.bound-8 || !strings.HasSuffix(tc.got, clipMark) || !utf8.ValidString(tc.got) {
			t.Errorf("%s stored in %d bytes (%.20q...); want it clipped to at most %d, ending in ..., valid UTF-8", tc.field, len(tc.got), tc.got, tc.bound)
		}
	}
	if !strings.HasPrefix(fn.Problem, `\x1b\x1b`) {
		t.Errorf("functions[0].problem = %.20q...; want it escaped before it is clipped", fn.Problem)
	}
}
