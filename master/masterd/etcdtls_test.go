package masterd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// freeAddrs returns n loopback addresses whose ports were free a moment
// ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // held until all are picked, so that they differ
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// startTLSEtcd runs an etcd that serves its clients over TLS and
// requires a client certificate of pki's CA until the test ends, and
// returns its client endpoint (https://127.0.0.1:PORT) once it answers.
func startTLSEtcd(t *testing.T, pki *nodetest.PKI) string {
	t.Helper()
	bin := nodetest.EtcdBinary(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "etcd")
	addrs := freeAddrs(t, 2)
	client, peer := "https://"+addrs[0], "http://"+addrs[1]
	dir := t.TempDir()
	logPath := filepath.Join(dir, "etcd.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "--name", "tls", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "tls="+peer,
		"--cert-file", crt, "--key-file", key, "--trusted-ca-file", pki.CA(), "--client-cert-auth",
		"--logger", "zap", "--log-outputs", "stderr")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("log of the TLS etcd:\n%s", out)
		}
	})

	// It serves once a read with a client certificate succeeds.
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, Logger: zap.NewNop(),
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "/")
		cancel()
		if err == nil {
			return client
		}
		select {
		case <-done:
			t.Fatalf("the TLS etcd exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS etcd did not answer within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling etcd, which has no event to wait on
	}
}

// TestEtcdTLS runs a masterd on an etcd that requires client
// certificates: with --etcd-cert, --etcd-key and --etcd-ca it is
// elected; without them it stays a standby naming no master, and says
// why in its log.
func TestEtcdTLS(t *testing.T) {
	pki := nodetest.NewPKI(t)
	endpoint := startTLSEtcd(t, pki)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	g := newGroup(t, []string{endpoint})
	without := g.start(0, "")
	with := nodetest.StartMasterd(t, nodetest.MasterdOptions{Flags: []string{
		"--check-nodes=false", "--etcd", endpoint, "--etcd-prefix", g.prefix, "--lease-ttl", haTTL.String(),
		"--etcd-cert", crt, "--etcd-key", key, "--etcd-ca", pki.CA(),
	}})
	g.active(20*time.Second, with, without)
	g.hello(with.URL(), "n1")
	without.AwaitLogLine(t, "not a candidate; trying again")
	a, err := g.ask(without.URL(), "GET", rpc.PathListNodes, nil)
	if err != nil || a.status != 421 || a.active != "" {
		t.Errorf("the masterd without a client certificate for etcd: %+v %v, want not_active naming no master", a, err)
	}
}
