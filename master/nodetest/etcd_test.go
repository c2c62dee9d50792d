package nodetest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestEtcdLife starts an etcd, writes to it, restarts it on the same
// ports and data directory (after SIGTERM, then after SIGKILL) and reads
// the write back each time; the cleanup checks that no process is left.
func TestEtcdLife(t *testing.T) {
	e := StartEtcd(t)
	cli := e.Client(t)
	prefix := EtcdPrefix(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, prefix+"/k", "v"); err != nil {
		t.Fatalf("Put to %v: %v", e.Endpoints(), err)
	}
	check := func(when string) {
		t.Helper()
		// The client redials by itself; a read may fail while it does.
		deadline := time.Now().Add(10 * time.Second)
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			resp, err := cli.Get(rctx, prefix+"/k")
			rcancel()
			if err == nil {
				if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
					t.Fatalf("%s: Get %s = %v, want one key of value v", when, prefix+"/k", resp.Kvs)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Get %s: %v", when, prefix+"/k", err)
			}
		}
	}
	pid := e.PID()
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	if !AwaitGone(pid, 5*time.Second) {
		t.Errorf("etcd pid %d still running after Restart", pid)
	}
	check("after a restart")

	pid = e.PID()
	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	if Running(pid) {
		t.Errorf("etcd pid %d running after Kill", pid)
	}
	if err := e.Kill(); err != nil {
		t.Errorf("a second Kill: %v, want nil", err)
	}
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	if e.PID() == pid {
		t.Errorf("Restart after Kill kept pid %d", pid)
	}
	check("after a kill and restart")
}

// TestEtcdPrefix: prefixes are unique per call and name the test.
func TestEtcdPrefix(t *testing.T) {
	a, b := EtcdPrefix(t), EtcdPrefix(t)
	if a == b {
		t.Errorf("EtcdPrefix twice = %q both times, want different prefixes", a)
	}
	if !strings.HasPrefix(a, "/nodetest/TestEtcdPrefix-") || strings.HasSuffix(a, "/") {
		t.Errorf("EtcdPrefix = %q, want /nodetest/TestEtcdPrefix-HEX", a)
	}
}

// TestEtcdEndpointsEnv: the shared etcd of the environment is used as
// given, with no etcd started.
func TestEtcdEndpointsEnv(t *testing.T) {
	t.Setenv(EtcdEndpointsEnv, " http://127.0.0.1:1,http://127.0.0.1:2 ,")
	got := EtcdEndpoints(t)
	want := []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("EtcdEndpoints with %s set = %q, want %q", EtcdEndpointsEnv, got, want)
	}
}

// TestEtcdThroughProxy cuts a client off etcd with a proxy (as the
// failover tests cut a masterd off) and lets it back: reads fail while
// the proxy stalls or cuts, and succeed again once it passes.
func TestEtcdThroughProxy(t *testing.T) {
	e := StartEtcd(t)
	p := StartProxy(t, e.ClientAddr())
	cli := EtcdClient(t, []string{"http://" + p.Addr()})
	get := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		_, err := cli.Get(ctx, EtcdPrefix(t))
		return err
	}
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("Get through the passing proxy: %v", err)
	}
	for _, mode := range []ProxyMode{ProxyStall, ProxyCut} {
		p.Set(mode, 0)
		if err := get(500 * time.Millisecond); err == nil {
			t.Errorf("Get through the proxy in mode %s succeeded, want an error", mode)
		}
		p.Set(ProxyPass, 0)
		// The client redials with its own back-off.
		deadline := time.Now().Add(20 * time.Second)
		for err := get(time.Second); err != nil; err = get(time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("Get after the proxy passes again (was %s): %v", mode, err)
			}
		}
	}
}
