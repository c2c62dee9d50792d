package masterd

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-json"
	bolt "go.etcd.io/bbolt"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/master/registry"
	"github.com/noderpc/noderpc/rpc"
)

// badStore writes, in a store in dir, records that a hello would be
// refused for (each listed up, as masterd stopped), one whose functions
// and calls no hello could report (escaped, then bounded), and records
// that pass at an https:// and an http:// URL.
func badStore(t *testing.T, dir string) (bad []string) {
	t.Helper()
	store, err := registry.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	node := func(name, url, boot string) registry.Record {
		return registry.Record{Node: rpc.Node{Name: name, State: rpc.NodeUp, URL: url, BootID: boot, Version: "v1", SessionTimeout: 10}, Version: 1}
	}
	const ok = "https://127.0.0.1:1811"
	records := []registry.Record{
		node("good", ok, "b"),
		node("plain", "http://127.0.0.1:1811", "b"),
		node("evil\nINFO forged", ok, "b"),
		node(strings.Repeat("n", 4000), ok, "b"),
		node("long-url", "https://127.0.0.1:1811/"+strings.Repeat("a", 5000), "b"),
		node("url-path", "https://127.0.0.1:1811/x", "b"),
		node("boot-escape", ok, "b\x1b]0;owned\x07"),
		node("no-boot", ok, ""),
	}
	bad = []string{"evil\nINFO forged", strings.Repeat("n", 4000), "long-url", "url-path", "boot-escape", "no-boot", "alias"}
	messy := node("messy", ok, "b")
	messy.Node.Functions = []rpc.Function{{Name: "f\x1b[2J", Kind: rpc.FunctionExecutable, Problem: strings.Repeat("p", 10000)}}
	for i := range maxLostCalls + 10 {
		messy.Node.Calls = append(messy.Node.Calls, rpc.NodeCall{CallSummary: rpc.CallSummary{ID: fmt.Sprintf("lost-%d", i), FnName: "sleep", State: rpc.StateRunning}, Lost: true})
	}
	for i := range maxReportedCalls + 10 {
		messy.Node.Calls = append(messy.Node.Calls, rpc.NodeCall{CallSummary: rpc.CallSummary{ID: fmt.Sprintf("c-%d", i), FnName: "sleep", State: rpc.StateRunning, RequestID: "r\u202e"}})
	}
	records = append(records, messy)
	if err := store.Write(registry.Change{Version: 1, Nodes: records}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// A record stored under a name other than its own, as an edit of the
	// file could leave it.
	db, err := bolt.Open(filepath.Join(dir, registry.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		v, err := json.Marshal(node("good", ok, "b"))
		if err != nil {
			return err
		}
		return tx.Bucket([]byte("nodes")).Put([]byte("alias"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestLoadChecksRecords checks that masterd, started on a store holding
// records a hello would be refused for (a name with a newline or of 4,000
// bytes, a URL too long or with a path, a boot id with an escape or
// none, a record under another name than its own), leaves them out, one
// log line each, and serves the others, what they report of functions
// and calls escaped and bounded as a hello's: masterd served every
// record as it was stored.
func TestLoadChecksRecords(t *testing.T) {
	dir := t.TempDir()
	bad := badStore(t, dir)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log nodetest.SyncBuffer
	cfg := Config{Insecure: true, Listen: ln.Addr().String(), StateDir: dir,
		SessionTimeout: DefaultSessionTimeout, MaxSessionTimeout: DefaultSessionTimeout, MaxConns: DefaultMaxConns, HeadTimeout: DefaultHeadTimeout,
		LogFormat: "text", LogLevel: "info"}
	runInTest(t, cfg, Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	base := cfg.advertised(cfg.Listen)
	c := &http.Client{Timeout: 20 * time.Second}

	var names []string
	for _, n := range listed(t, c, base) {
		names = append(names, n.Name)
		if n.State != rpc.NodeDown {
			t.Errorf("%s listed %s after the restart, want down", n.Name, n.State)
		}
	}
	if want := []string{"good", "messy", "plain"}; !slices.Equal(names, want) {
		t.Errorf("listed %q; want %q, the records that pass the checks of a hello", names, want)
	}
	for _, name := range bad {
		if !strings.Contains(log.String(), logAttr("node", rpc.Clip(name, rpc.MaxNodeNameLen))) {
			t.Errorf("no log line of the record of %.20q left out:\n%.3000s", name, log.String())
		}
	}
	if got := strings.Count(log.String(), "fails the checks of a hello"); got != len(bad) {
		t.Errorf("%d log lines of records left out, want %d", got, len(bad))
	}
	if !strings.Contains(log.String(), fmt.Sprintf("not_loaded=%d", len(bad))) {
		t.Errorf("the log line of the registry loaded does not count the %d records left out:\n%.3000s", len(bad), log.String())
	}

	status, _, _, body := call(t, c, base, "PUT", rpc.PathGetNode, []byte(`{"node":"messy"}`))
	var messy rpc.Node
	if status != 200 || json.Unmarshal(body, &messy) != nil {
		t.Fatalf("GetNode messy = %d %s", status, clipped(body))
	}
	lost, current := 0, 0
	for _, call := range messy.Calls {
		if call.Lost {
			lost++
		} else {
			current++
			if call.RequestID != `r\u202e` {
				t.Fatalf("call %s loaded with request ID %q, want it escaped", call.ID, call.RequestID)
			}
		}
	}
	if lost != maxLostCalls || current != maxReportedCalls || messy.Calls[0].ID != "lost-10" {
		t.Errorf("messy loaded with %d lost calls from %s and %d others; want the %d most recently lost and %d others", lost, messy.Calls[0].ID, current, maxLostCalls, maxReportedCalls)
	}
	if f := messy.Functions[0]; f.Name != `f\x1b[2J` || len(f.Problem) > maxReportedProblem || !strings.HasSuffix(f.Problem, clipMark) {
		t.Errorf("messy's function loaded as %q with a problem of %d bytes; want it escaped and clipped", f.Name, len(f.Problem))
	}
	if !strings.Contains(log.String(), "reports functions or calls as no hello may") {
		t.Errorf("no log line of messy's record escaped and bounded:\n%.3000s", log.String())
	}
}

// TestTakeOverChecksRecords checks that a master elected on a registry
// holding records a hello would be refused for leaves them out too,
// and, serving TLS, a record at an http:// URL, which no master calls.
func TestTakeOverChecksRecords(t *testing.T) {
	dir := t.TempDir()
	badStore(t, dir)
	store, err := registry.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snap, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	ms := takeOver(snap, store, newFakeClock(), slog.New(slog.DiscardHandler), testTimeout, 30*time.Second, []string{"https://m1:1812"}, true)
	defer ms.close()
	var names []string
	for _, n := range ms.list().Nodes {
		names = append(names, n.Name)
	}
	if want := []string{"good", "messy"}; !slices.Equal(names, want) {
		t.Errorf("taken over by a master serving TLS: %q; want %q", names, want)
	}
	if got := stateOf(t, ms, "good"); got != rpc.NodeUp {
		t.Errorf("good after the takeover: %s, want up until its session timeout", got)
	}
}

// logAttr is key=value as a text log has it.
func logAttr(key, value string) string {
	var b strings.Builder
	only := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key != key {
			return slog.Attr{}
		}
		return a
	}
	slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: only})).Info("", key, value)
	return strings.TrimSpace(b.String())
}
