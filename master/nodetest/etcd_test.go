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
