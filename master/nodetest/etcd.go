package nodetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdEndpointsEnv names the environment variable that gives the tests a
// running etcd (comma-separated client URLs), as CI does: see
// [EtcdEndpoints].
const EtcdEndpointsEnv = "NODERPC_ETCD_ENDPOINTS"

// etcdInstall is what a test that skips for want of etcd tells.
const etcdInstall = "etcd is not installed (no etcd in PATH nor /usr/bin/etcd): apt-get install etcd-server, or set " + EtcdEndpointsEnv

// etcdStartTimeout bounds how long etcd may take to serve; it starts in
// about a second, fsyncs included.
const etcdStartTimeout = 30 * time.Second

// Etcd is one single-member etcd cluster of a test, on loopback ports
// of its own and a data directory kept across restarts.
type Etcd struct {
	*daemon             // data/, logs
	client, peer string // http://127.0.0.1:port
}

// EtcdBinary returns the etcd binary tests run: etcd from PATH, else
// Debian's /usr/bin/etcd. Without one the test is skipped with a word on
// how to install it, or fails when CI=true: CI must run every test.
func EtcdBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(etcdInstall + "; CI=true, so the test fails instead of skipping")
	}
	t.Skip(etcdInstall)
	return ""
}

// StartEtcd starts a single-member etcd for the test t on free loopback
// ports with a data directory in a temporary directory, and returns it
// once it answers. The test's cleanup stops it, fails the test if it
// did not exit on SIGTERM or left a process behind, and logs the tail of
// its log when the test failed.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin := EtcdBinary(t)
	d, err := newDaemon("etcd", bin, "etcd-"+clip(Sanitize(t.Name()), 60)+"-",
		MarkerKey+"=etcd-"+RandomHex(8), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.sigtermEnds = true
	e := &Etcd{daemon: d}
	// A port found free may be taken by another process before etcd
	// binds it: the machine is shared. Another pair of ports then.
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			os.RemoveAll(d.dir)
			t.Fatal(err)
		}
		e.client = "http://" + ports[0]
		e.peer = "http://" + ports[1]
		d.addr = ports[0]
		err = e.start()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			os.RemoveAll(d.dir)
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { e.closeFor(t, true) })
	return e
}

// freePorts returns n loopback addresses whose ports were free a moment
// ago, each different: all n are held until each is chosen, since one at
// a time the kernel may hand the same port out twice.
func freePorts(n int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("nodetest: finding a free loopback port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// DataDir is etcd's --data-dir, kept across restarts.
func (e *Etcd) DataDir() string { return filepath.Join(e.dir, "data") }

// start runs a new incarnation on e's ports and waits until it answers.
func (e *Etcd) start() error {
	args := []string{
		"--name", "nodetest",
		"--data-dir", e.DataDir(),
		"--listen-client-urls", e.client,
		"--advertise-client-urls", e.client,
		"--listen-peer-urls", e.peer,
		"--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "nodetest=" + e.peer,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	// ETCD_* variables of the test's environment would override flags.
	var env []string
	for _, kv := range environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return e.spawn(args, env, e.awaitServing)
}

// awaitServing polls etcd's /health until it says it is healthy (it has
// a leader), the incarnation exits or the start timeout passes, in which
// case it is killed. Plain HTTP, not an etcd client: a gRPC client whose
// first dials were refused waits out its own reconnect back-off, which
// made a restart look seconds slower than it was.
func (e *Etcd) awaitServing(inc *incarnation) error {
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(etcdStartTimeout)
	var err error
	for {
		var resp *http.Response
		if resp, err = hc.Get(e.client + "/health"); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("/health answered %s %s", resp.Status, body)
		}
		select {
		case <-inc.done:
			return fmt.Errorf("exited before serving: %v", inc.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			inc.cmd.Process.Kill()
			<-inc.done
			return fmt.Errorf("did not serve within %s: %v", etcdStartTimeout, err)
		}
	}
}

// Endpoints returns etcd's client URLs, the same for every incarnation.
func (e *Etcd) Endpoints() []string { return []string{e.client} }

// ClientAddr returns the host:port of etcd's client URL, for a proxy
// ([StartProxy]) to forward to.
func (e *Etcd) ClientAddr() string { return strings.TrimPrefix(e.client, "http://") }

// PID returns the process ID of the latest incarnation.
func (e *Etcd) PID() int { return e.pid() }

// Log returns what the latest incarnation has written so far.
func (e *Etcd) Log() string { return e.log() }

// Client returns a client of e, closed by the test's cleanup.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return EtcdClient(t, e.Endpoints())
}

// EtcdClient returns a client of the etcd at endpoints, closed by the
// test's cleanup. It logs nothing: the client's own logs would bury the
// test's.
func EtcdClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("nodetest: a client of etcd %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. It is idempotent.
func (e *Etcd) Kill() error { return e.kill() }

// Stop stops the latest incarnation with SIGCONT and SIGTERM, and
// SIGKILL after 30s. etcd ends on SIGTERM by killing itself with it once
// its handlers ran, so that end is the clean one, as is status 0. It
// returns an error if etcd ended otherwise or had exited by itself
// unnoticed. It is idempotent.
func (e *Etcd) Stop() error { return e.stopLatest() }

// Restart starts a new incarnation on the same ports and data directory,
// stopping the running one first ([Etcd.Stop]) if there is one, and
// returns once it serves.
func (e *Etcd) Restart() error {
	if err := e.Stop(); err != nil {
		return err
	}
	return e.start()
}

// Close stops etcd and checks that no process of it outlives it. It is
// idempotent.
func (e *Etcd) Close() error { return e.shutdown() }

// EtcdRevisions returns the modification revision of every key under
// prefix in the etcd of cli: what a test compares to tell whether
// anything wrote there meanwhile.
func EtcdRevisions(t testing.TB, cli *clientv3.Client, prefix string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("nodetest: reading the keys under %s in etcd: %v", prefix, err)
	}
	revs := make(map[string]int64)
	for _, kv := range resp.Kvs {
		revs[string(kv.Key)] = kv.ModRevision
	}
	return revs
}

// EtcdEndpoints returns the client URLs of an etcd for the test t: the
// shared one named by NODERPC_ETCD_ENDPOINTS when set (CI starts one
// for the whole run), else a private one from [StartEtcd]. A test on
// the shared etcd must keep to keys under a prefix of its own
// ([EtcdPrefix]): other tests use it at the same time, and it outlives
// the run's packages.
func EtcdEndpoints(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv(EtcdEndpointsEnv); env != "" {
		var eps []string
		for ep := range strings.SplitSeq(env, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				eps = append(eps, ep)
			}
		}
		if len(eps) > 0 {
			return eps
		}
	}
	return StartEtcd(t).Endpoints()
}

// EtcdPrefix returns a key prefix of the test t's own, unique across
// tests and runs, for a test to keep to on a shared etcd: it has no
// trailing slash, as masterd's --etcd-prefix.
func EtcdPrefix(t testing.TB) string {
	return "/nodetest/" + clip(Sanitize(t.Name()), 80) + "-" + RandomHex(6)
}
