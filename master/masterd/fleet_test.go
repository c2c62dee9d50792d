package masterd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
	"github.com/noderpc/noderpc/tools"
)

// fleet is a masterd and the real nodes that joined it, seen through
// the public client of the group, master.Cluster, as an operator would.
type fleet struct {
	t       *testing.T
	md      *nodetest.Masterd
	nodes   []*nodetest.Node
	names   []string
	cluster *master.Cluster
	// web reads the X-Group-Version header, which Cluster does not show.
	web *http.Client
}

// list lists masterd's nodes by name, with the group version.
func (f *fleet) list() (map[string]rpc.Node, uint64) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 10*time.Second)
	defer cancel()
	l, err := f.cluster.Nodes(ctx)
	if err != nil {
		f.t.Fatalf("listing the nodes of masterd: %v", err)
	}
	nodes := make(map[string]rpc.Node, len(l.Nodes))
	for _, n := range l.Nodes {
		nodes[n.Name] = n
	}
	return nodes, l.GroupVersion
}

// await polls masterd's list until ok holds of it, and returns it; the
// test fails past within.
func (f *fleet) await(what string, within time.Duration, ok func(map[string]rpc.Node) bool) (map[string]rpc.Node, uint64) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		nodes, version := f.list()
		if ok(nodes) {
			return nodes, version
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("masterd: not %s within %s; it lists (group version %d):\n%s", what, within, version, f.table(nodes))
		}
		time.Sleep(20 * time.Millisecond) // polling masterd's list, which has no event to wait on
	}
}

// table prints nodes one a line, for a failure's message.
func (f *fleet) table(nodes map[string]rpc.Node) string {
	var b strings.Builder
	for _, name := range f.names {
		n, ok := nodes[name]
		if !ok {
			fmt.Fprintf(&b, "  %s: unknown\n", name)
			continue
		}
		fmt.Fprintf(&b, "  %s: %s %s boot %s joined %s last contact %s\n", name, n.State, n.URL, n.BootID,
			n.Joined.Format(time.StampMilli), n.LastContact.Format(time.StampMilli))
	}
	return b.String()
}

// allUp reports whether every node of the fleet is listed up.
func (f *fleet) allUp(nodes map[string]rpc.Node) bool {
	for _, name := range f.names {
		if nodes[name].State != rpc.NodeUp {
			return false
		}
	}
	return true
}

// headerVersion returns the X-Group-Version header of a ListNodes
// answer and the group version in its body.
func (f *fleet) headerVersion() (header, body uint64) {
	f.t.Helper()
	resp, err := f.web.Get(f.md.URL() + rpc.PathListNodes)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s: %s %s (%v)", rpc.PathListNodes, resp.Status, raw, err)
	}
	var l rpc.ListNodesResponse
	if err := rpc.UnmarshalStrict(raw, &l, rpc.IgnoreUnknownFields); err != nil {
		f.t.Fatalf("GET %s: %v", rpc.PathListNodes, err)
	}
	header, err = strconv.ParseUint(resp.Header.Get(rpc.HeaderGroupVersion), 10, 64)
	if err != nil {
		f.t.Fatalf("GET %s: %s header %q: %v", rpc.PathListNodes, rpc.HeaderGroupVersion, resp.Header.Get(rpc.HeaderGroupVersion), err)
	}
	return header, l.GroupVersion
}

// TestFleet runs masterd with 20 real noded processes over mutual TLS,
// each with its own node certificate: all join with their facts; one
// frozen is listed down within the session timeout and a second, and
// comes back with the same boot id when thawed, while the others keep
// their sessions; a restarted masterd still knows all 20 and every one
// says hello again; and noderpc call --all runs on all 20.
func TestFleet(t *testing.T) {
	const (
		size    = 20
		timeout = 2 * time.Second
	)
	p := nodetest.NewPKI(t)
	crt, key := p.Issue(t, rpc.RoleMaster, "masterd")
	md := nodetest.StartMasterd(t, nodetest.MasterdOptions{
		TLS:   &nodetest.TLS{Cert: crt, Key: key, ClientCA: p.CA()},
		Flags: []string{"--session-timeout", timeout.String()},
	})
	f := &fleet{t: t, md: md}
	// Every other node has a master in its list that is not there: it
	// joins the live one all the same.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	opts := make([]nodetest.Options, size)
	for i := range opts {
		name := fmt.Sprintf("fleet-%02d", i)
		f.names = append(f.names, name)
		masters := md.URL()
		if i%2 == 1 {
			masters = dead + "," + md.URL()
		}
		opts[i] = nodetest.Options{
			TLS:   p.NodeTLS(t, name),
			Flags: []string{"--node-name", name, "--master", masters},
			// A function of each node's own, so that the functions
			// masterd lists are told apart node by node.
			Functions: map[string]string{"whoami-" + name: `echo '"` + name + `"'`},
		}
	}
	started := time.Now()
	f.nodes = nodetest.StartEach(t, opts)

	// The operator: a master certificate, for masterd and the nodes.
	opCrt, opKey := p.Issue(t, rpc.RoleMaster, "operator")
	tlsConfig, err := master.LoadTLS(opCrt, opKey, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	f.cluster, err = master.NewCluster([]string{md.URL()}, master.Options{TLS: tlsConfig, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer f.cluster.Close()
	f.web = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone()}}
	defer f.web.CloseIdleConnections()

	// 1. Every node joins, listed with the URL it serves on, the boot id
	// and the functions it reports itself.
	joined, _ := f.await("listing all 20 nodes up", 20*time.Second, f.allUp)
	t.Logf("all %d nodes up %s after their start began", size, time.Since(started).Round(time.Millisecond))
	boots := make(map[string]string, size)
	for i, n := range f.nodes {
		name := f.names[i]
		c, err := master.New(n.Addr(), master.Options{TLS: tlsConfig})
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Version(t.Context())
		if err != nil {
			t.Fatalf("%s: GET /Version: %v", name, err)
		}
		fns, err := c.ListFunctions(t.Context())
		c.Close()
		if err != nil {
			t.Fatalf("%s: ListFunctions: %v", name, err)
		}
		got := joined[name]
		boots[name] = v.BootID
		if want := "https://" + n.Addr(); got.URL != want {
			t.Errorf("%s listed at %q, want the URL it serves on, %q", name, got.URL, want)
		}
		if got.BootID != v.BootID || got.Version != v.Version || got.Protocol != v.Protocol {
			t.Errorf("%s listed with boot id %q, version %q, protocol %d; the node says %q, %q, %d", name, got.BootID, got.Version, got.Protocol, v.BootID, v.Version, v.Protocol)
		}
		if !slices.Equal(got.Functions, fns) || !slices.ContainsFunc(got.Functions, func(fn rpc.Function) bool { return fn.Name == "whoami-"+name }) {
			t.Errorf("%s listed with functions %v; the node lists %v", name, got.Functions, fns)
		}
		if got.SessionTimeout != timeout.Seconds() {
			t.Errorf("%s listed with a session timeout of %vs, want masterd's %v", name, got.SessionTimeout, timeout)
		}
	}

	// 2. A frozen node is listed down within the session timeout and a
	// second of the signal: its last renewal came before the signal, so
	// its deadline is at most one timeout after it. The group version
	// moves, in the body and in the header; the others stay up.
	const victim = 7
	vname := f.names[victim]
	_, before := f.list()
	if err := f.nodes[victim].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer f.nodes[victim].Signal(syscall.SIGCONT) // even if the test fails, Stop must find it running
	stopped := time.Now()
	down, downVersion := f.await(vname+" down", 10*time.Second, func(nodes map[string]rpc.Node) bool { return nodes[vname].State == rpc.NodeDown })
	took := time.Since(stopped)
	t.Logf("%s listed down %s after SIGSTOP (session timeout %s)", vname, took.Round(time.Millisecond), timeout)
	if bound := timeout + time.Second; took > bound {
		t.Errorf("%s listed down %s after SIGSTOP, want within the session timeout and a second, %s", vname, took, bound)
	}
	// Nor before its deadline: masterd answered the list after it
	// marked the node down, which it may do at the node's last contact
	// and a timeout at the soonest.
	if deadline := down[vname].LastContact.Add(timeout); time.Now().Before(deadline) {
		t.Errorf("%s listed down before its deadline %s (last contact %s)", vname, deadline.Format(time.StampMilli), down[vname].LastContact.Format(time.StampMilli))
	}
	if downVersion <= before {
		t.Errorf("group version %d with %s down, want above %d", downVersion, vname, before)
	}
	if header, body := f.headerVersion(); header != body || header < downVersion {
		t.Errorf("ListNodes answers %s: %d and group_version %d; want equal, at least %d", rpc.HeaderGroupVersion, header, body, downVersion)
	}
	for _, name := range f.names {
		if n := down[name]; name != vname && n.State != rpc.NodeUp {
			t.Errorf("%s is %s while %s is frozen, want up:\n%s", name, n.State, vname, f.table(down))
		}
	}

	// 3. Thawed, it says hello again: up, with the boot id it had.
	if err := f.nodes[victim].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back, backVersion := f.await(vname+" up again", 20*time.Second, func(nodes map[string]rpc.Node) bool {
		n := nodes[vname]
		return n.State == rpc.NodeUp && n.Joined.After(joined[vname].Joined)
	})
	if got := back[vname].BootID; got != boots[vname] {
		t.Errorf("%s came back with boot id %s, want its own %s", vname, got, boots[vname])
	}
	if backVersion <= downVersion {
		t.Errorf("group version %d with %s back, want above %d", backVersion, vname, downVersion)
	}
	// Renewing well inside the timeout, the others never lost their
	// session: each is still in the session it joined first.
	for _, name := range f.names {
		if n := back[name]; name != vname && !n.Joined.Equal(joined[name].Joined) {
			t.Errorf("%s joined again at %s (first at %s): it lost its session while %s was frozen", name, n.Joined, joined[name].Joined, vname)
		}
	}

	// 4. A restarted masterd knows all 20 from its store, with their URLs
	// and boot ids: it counts them as it starts, before any hello; then
	// every node says hello again.
	_, beforeRestart := f.list()
	restarted := time.Now()
	if err := md.Restart(); err != nil {
		t.Fatal(err)
	}
	md.AwaitLogLine(t, "registry loaded", fmt.Sprintf("nodes=%d", size), fmt.Sprintf("were_up=%d", size))
	kept, _ := f.list()
	for i, n := range f.nodes {
		name := f.names[i]
		got, ok := kept[name]
		if !ok {
			t.Errorf("the restarted masterd does not know %s", name)
			continue
		}
		if want := "https://" + n.Addr(); got.URL != want || got.BootID != boots[name] {
			t.Errorf("the restarted masterd lists %s at %q with boot id %q, want %q and %q", name, got.URL, got.BootID, want, boots[name])
		}
	}
	again, againVersion := f.await("listing all 20 up after its restart", 20*time.Second, f.allUp)
	t.Logf("all %d nodes up again %s after masterd's restart began", size, time.Since(restarted).Round(time.Millisecond))
	for _, name := range f.names {
		if n := again[name]; n.BootID != boots[name] || !n.Joined.After(back[name].Joined) {
			t.Errorf("%s after masterd's restart: boot id %s joined %s; want %s, joined after %s", name, n.BootID, n.Joined, boots[name], back[name].Joined)
		}
	}
	if againVersion <= beforeRestart {
		t.Errorf("group version %d after the restart and the hellos, want above %d", againVersion, beforeRestart)
	}

	// 5. noderpc call --all, in-process, runs on every node masterd lists.
	var stdout, stderr bytes.Buffer
	code := tools.Run(t.Context(), []string{"--cert", opCrt, "--key", opKey, "--ca", p.CA(), "--master", md.URL(),
		"call", "--all", "echo", `"x"`}, strings.NewReader(""), &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if code != tools.ExitOK || len(lines) != size {
		t.Fatalf("noderpc call --all echo = exit %d, %d lines, stdout %q, stderr %q; want 0 and %d lines", code, len(lines), stdout.String(), stderr.String(), size)
	}
	for _, n := range f.nodes {
		if want := n.Addr() + `: "x"`; !slices.Contains(lines, want) {
			t.Errorf("noderpc call --all echo printed %q, with no line %q", stdout.String(), want)
		}
	}
}
