package masterd

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// listOf lists the nodes of the masterd at base, by name.
func listOf(t *testing.T, c *http.Client, base string) map[string]rpc.Node {
	t.Helper()
	l := listed(t, c, base)
	nodes := make(map[string]rpc.Node, len(l))
	for _, n := range l {
		nodes[n.Name] = n
	}
	return nodes
}

// TestKillDuringJoinStorm SIGKILLs a real masterd while hellos pour in
// from many connections at once, and checks that the masterd started
// again opens the store and knows every node whose hello was
// acknowledged.
func TestKillDuringJoinStorm(t *testing.T) {
	m := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{"--check-nodes=false"}})
	base := m.URL()
	var (
		acked   sync.Map
		count   atomic.Int64
		next    atomic.Int64
		stop    = make(chan struct{})
		enough  = make(chan struct{})
		once    sync.Once
		workers sync.WaitGroup
	)
	for range 16 {
		workers.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("node-%05d", next.Add(1))
				body, _ := json.Marshal(helloOf(name, "boot-"+name))
				req, _ := http.NewRequest("PUT", base+rpc.PathHello, bytes.NewReader(body))
				resp, err := c.Do(req)
				if err != nil {
					continue // masterd is dead, or dying: not acknowledged
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					acked.Store(name, true)
					if count.Add(1) >= 300 {
						once.Do(func() { close(enough) })
					}
				}
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d hellos acknowledged within 60s", count.Load())
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	workers.Wait()
	if err := m.Relaunch(); err != nil {
		t.Fatal(err)
	}
	m.AwaitLogLine(t, "registry loaded")
	nodes := listOf(t, &http.Client{Timeout: 20 * time.Second}, base)
	missing := 0
	acked.Range(func(k, _ any) bool {
		n, ok := nodes[k.(string)]
		if !ok {
			missing++
			if missing <= 5 {
				t.Errorf("node %s: its hello was acknowledged, and the restarted masterd does not know it", k)
			}
		} else if n.State != rpc.NodeDown || n.BootID != "boot-"+n.Name {
			t.Errorf("node %s after the restart: %s, boot %s; want down, boot-%s", n.Name, n.State, n.BootID, n.Name)
		}
		return true
	})
	if missing > 0 {
		t.Errorf("%d of %d acknowledged hellos lost by the SIGKILL", missing, count.Load())
	}
	t.Logf("%d hellos acknowledged before the SIGKILL; the store held %d nodes", count.Load(), len(nodes))
}

// TestRestartKeepsRegistry restarts a real masterd: it knows the node,
// down, with its configuration, until the node says hello again.
func TestRestartKeepsRegistry(t *testing.T) {
	m := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{"--check-nodes=false"}})
	c := &http.Client{Timeout: 20 * time.Second}
	body, _ := json.Marshal(helloOf("n1", "b1"))
	if status, kind, _, out := call(t, c, m.URL(), "PUT", rpc.PathHello, body); status != 200 {
		t.Fatalf("hello = %d %s %s", status, kind, out)
	}
	if status, kind, _, out := call(t, c, m.URL(), "PUT", rpc.PathSetConfig, []byte(`{"node":"n1","set":{"k":1}}`)); status != 200 {
		t.Fatalf("set config = %d %s %s", status, kind, out)
	}
	m.AwaitLogLine(t, "node joined", "node=n1")
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	m.AwaitLogLine(t, "registry loaded", "nodes=1", "were_up=1")
	if n := listOf(t, c, m.URL())["n1"]; n.State != rpc.NodeDown || n.BootID != "b1" {
		t.Errorf("n1 after the restart: %+v, want down with boot b1", n)
	}
	status, _, _, out := call(t, c, m.URL(), "PUT", rpc.PathHello, body)
	var s rpc.Session
	if status != 200 || json.Unmarshal(out, &s) != nil || string(s.Config["k"]) != "1" {
		t.Errorf("hello after the restart = %d %s, want a session with k=1", status, out)
	}
	if n := listOf(t, c, m.URL())["n1"]; n.State != rpc.NodeUp {
		t.Errorf("n1 after its new hello: %s, want up", n.State)
	}
}
