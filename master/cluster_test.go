package master

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

func TestNewClusterRefusesBadURLs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		urls     []string
		insecure bool
		want     string
	}{
		{"none", nil, true, "no masterd URL given"},
		{"host:port", []string{"127.0.0.1:1812"}, true, `URL "127.0.0.1:1812": want http://host:port`},
		{"another scheme", []string{"ftp://m1:1812"}, false, "want https://host:port"},
		{"https while insecure", []string{"https://m1:1812"}, true, "it serves TLS, and this client talks plain HTTP"},
		{"http with TLS", []string{"http://m1:1812"}, false, "it serves plain HTTP (run with --insecure)"},
		{"no port", []string{"http://m1"}, true, "no port"},
		{"a path", []string{"http://m1:1812/api"}, true, "without a path or query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Insecure: tc.insecure}
			if !tc.insecure {
				opts.TLS = &tls.Config{}
			}
			c, err := NewCluster(tc.urls, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCluster(%q) = %v, %v; want an error holding %q", tc.urls, c, err, tc.want)
			}
			if len(tc.urls) > 0 && !errors.Is(err, rpc.ErrBadRequest) {
				t.Errorf("NewCluster(%q) error %v does not match rpc.ErrBadRequest", tc.urls, err)
			}
		})
	}
}

// With every master unreachable, each is tried once in turn and the
// error names them all; with one, its own error is returned.
func TestClusterNoMasterAnswers(t *testing.T) {
	dead := nodetest.DeadAddrs(t, 2)
	a, b := dead[0], dead[1]
	fast := Options{Insecure: true, Timeout: time.Second, Retry: RetryPolicies{List: Policy{MaxAttempts: 1}}}
	c, err := NewCluster([]string{"http://" + a, "http://" + b, "http://" + a}, fast)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Masters(); len(got) != 2 {
		t.Errorf("Masters() = %q, want the two distinct masters", got)
	}
	_, err = c.Nodes(context.Background())
	var nm *NoMasterError
	if !errors.As(err, &nm) || len(nm.Errs) != 2 || !errors.Is(err, rpc.ErrUnreachable) ||
		!strings.Contains(err.Error(), a+": unreachable") || !strings.Contains(err.Error(), b+": unreachable") {
		t.Fatalf("Nodes() with two dead masters = %v; want a *NoMasterError naming both unreachable", err)
	}

	one, err := NewCluster([]string{"http://" + a}, fast)
	if err != nil {
		t.Fatal(err)
	}
	var ue *UnreachableError
	if _, err := one.Config(context.Background(), ""); !errors.As(err, &ue) || ue.Node != a {
		t.Errorf("Config() with one dead master = %v; want its *UnreachableError", err)
	}
}

func TestClusterRefusesBadRequestsUnsent(t *testing.T) {
	c, err := NewCluster([]string{"http://" + nodetest.DeadAddr(t)}, Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Node(ctx, ""); !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("Node(\"\") = %v, want bad_request", err)
	}
	for _, req := range []rpc.SetConfigRequest{
		{},
		{Set: rpc.Config{"a": []byte("1")}, Delete: []string{"a"}},
	} {
		if _, err := c.SetConfig(ctx, req); !errors.Is(err, rpc.ErrBadRequest) {
			t.Errorf("SetConfig(%+v) = %v, want bad_request before anything is sent", req, err)
		}
	}
}

// The Cluster reads and changes what masterd knows over mutual TLS, and
// calls the up nodes directly at the URLs they advertised.
func TestClusterAgainstMasterd(t *testing.T) {
	p := nodetest.NewPKI(t)
	mcrt, mkey := p.Issue(t, rpc.RoleMaster, "masterd1")
	addr := nodetest.StartMasterd(t, nodetest.MasterdOptions{TLS: &nodetest.TLS{Cert: mcrt, Key: mkey, ClientCA: p.CA()}}).Addr()
	tlsFor := func(role rpc.Role, name string) *tls.Config {
		crt, key := p.Issue(t, role, name)
		cfg, err := LoadTLS(crt, key, p.CA())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	admin := tlsFor(rpc.RoleMaster, "admin")

	n1 := nodetest.Start(t, nodetest.Options{TLS: p.NodeTLS(t, "n1")})
	v, err := mustNew(t, n1.Addr(), Options{TLS: admin}).Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fns := []rpc.Function{{Name: "echo", Kind: "builtin"}}
	nodetest.SayHello(t, "https://"+addr, tlsFor(rpc.RoleNode, "n1"), rpc.HelloRequest{
		Node: "n1", URL: n1.URL(), Version: v.Version, Protocol: v.Protocol, BootID: v.BootID, Functions: fns,
		Calls: []rpc.CallSummary{},
	})

	ctx := context.Background()
	dead := nodetest.DeadAddr(t)
	// The dead master comes first, and is the first asked.
	first := func(int64) int64 { return 0 }
	c, err := NewCluster([]string{"https://" + dead, "https://" + addr}, Options{TLS: admin, Timeout: 2 * time.Second, Retry: RetryPolicies{List: Policy{MaxAttempts: 1}}, randN: first})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Configuration, group-wide and of a node before and after it joins.
	if _, err := c.SetConfig(ctx, rpc.SetConfigRequest{Set: rpc.Config{"zone": []byte(`"eu"`), "max_calls": []byte("64")}}); err != nil {
		t.Fatalf("SetConfig of the group: %v", err)
	}
	if got := c.Active(); got != "https://"+addr {
		// The first request went to the dead master, then to the live one.
		t.Errorf("Active() after an answer = %s, want the live master https://%s", got, addr)
	}
	cfg, err := c.SetConfig(ctx, rpc.SetConfigRequest{Node: "n1", Set: rpc.Config{"zone": []byte(`"us"`)}})
	if err != nil {
		t.Fatalf("SetConfig of n1: %v", err)
	}
	if string(cfg.Effective["zone"]) != `"us"` || string(cfg.Effective["max_calls"]) != "64" || string(cfg.Group["zone"]) != `"eu"` {
		t.Errorf("SetConfig of n1 = %+v; want zone \"us\" overriding the group's \"eu\", max_calls 64 from the group", cfg)
	}
	if cfg, err := c.Config(ctx, "later"); err != nil || string(cfg.Effective["zone"]) != `"eu"` {
		t.Errorf("Config(later), a node never seen = %+v, %v; want the group's zone", cfg, err)
	}
	if cfg, err := c.SetConfig(ctx, rpc.SetConfigRequest{Delete: []string{"max_calls"}}); err != nil || cfg.Effective["max_calls"] != nil {
		t.Errorf("SetConfig deleting max_calls = %+v, %v; want it gone", cfg, err)
	}

	list, err := c.Nodes(ctx)
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if len(list.Nodes) == 0 || list.Nodes[0].Name != "n1" || list.Nodes[0].State != rpc.NodeUp || list.Nodes[0].BootID != v.BootID || list.GroupVersion == 0 {
		t.Errorf("Nodes() = %+v; want n1 up with its boot id, and a group version", list)
	}
	n, err := c.Node(ctx, "n1")
	if err != nil || n.URL != n1.URL() || len(n.Functions) != 1 || string(n.Config["zone"]) != `"us"` {
		t.Errorf("Node(n1) = %+v, %v; want its URL, its function and its configuration", n, err)
	}
	if _, err := c.Node(ctx, "nope"); !errors.Is(err, rpc.ErrUnknownNode) {
		t.Errorf("Node(nope) = %v, want unknown_node", err)
	}

	// The up nodes, called directly.
	clients, err := c.UpClients(ctx)
	if err != nil || len(clients) != 1 || clients[0].Node() != n1.Addr() {
		t.Fatalf("UpClients() = %v, %v; want one client of %s", clients, err, n1.Addr())
	}
	res := CallEach(ctx, clients, "echo", "hi", 0, CallOptions{})
	if res[0].Err != nil || string(res[0].Call.Result) != `"hi"` {
		t.Errorf("echo on the up nodes = %+v; want \"hi\" from n1", res[0])
	}

	// An observer may read, not configure.
	obs, err := NewCluster([]string{"https://" + addr}, Options{TLS: tlsFor(rpc.RoleObserver, "watcher")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Nodes(ctx); err != nil {
		t.Errorf("Nodes() as an observer: %v", err)
	}
	if _, err := obs.SetConfig(ctx, rpc.SetConfigRequest{Set: rpc.Config{"a": []byte("1")}}); !errors.Is(err, rpc.ErrForbidden) {
		t.Errorf("SetConfig as an observer = %v, want forbidden", err)
	}
}

// A node listed up at an URL the client cannot call (plain HTTP to a
// client that talks TLS, say) is that node's error, not the others'.
func TestClusterUpNodeWithAnURLOfTheOtherScheme(t *testing.T) {
	addr := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{"--check-nodes=false"}}).Addr()
	nodetest.SayHello(t, "http://"+addr, nil, rpc.HelloRequest{Node: "a", URL: "http://127.0.0.1:1811", BootID: "b1", Functions: []rpc.Function{}, Calls: []rpc.CallSummary{}})
	nodetest.SayHello(t, "http://"+addr, nil, rpc.HelloRequest{Node: "b", URL: "https://127.0.0.1:1811", BootID: "b2", Functions: []rpc.Function{}, Calls: []rpc.CallSummary{}})
	c, err := NewCluster([]string{"http://" + addr}, Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.Up(context.Background())
	var uerr *URLError
	if err != nil || len(up) != 2 || up[0].Client == nil || up[0].Client.Node() != "127.0.0.1:1811" || !errors.As(up[1].Err, &uerr) {
		t.Fatalf("Up() = %+v, %v; want a client for a and a *URLError for b", up, err)
	}
	if _, err := c.UpClients(context.Background()); !errors.As(err, &uerr) || !strings.Contains(err.Error(), "node b") {
		t.Errorf("UpClients() = %v; want b's *URLError", err)
	}
}

func mustNew(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	c, err := New(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
