package masterd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// etcdTLSConfig loads the etcd client's TLS files.
func (c *Config) etcdTLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.EtcdCert, c.EtcdKey)
	if err != nil {
		return nil, fmt.Errorf("--etcd-cert and --etcd-key: %w", err)
	}
	pem, err := os.ReadFile(c.EtcdCA)
	if err != nil {
		return nil, fmt.Errorf("--etcd-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--etcd-ca: %s holds no PEM certificate", c.EtcdCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// etcdReconnect bounds the back-off of the etcd client's reconnections
// to a second: gRPC's default grows to two minutes, and a restarted
// etcd must see its masters again within seconds.
var etcdReconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// etcdClient returns the client of --etcd. It connects in the
// background: the election's first request waits for etcd, bounded.
func (d *Daemon) etcdClient() (*clientv3.Client, error) {
	eps, err := d.cfg.etcdEndpoints()
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 2 * time.Second,
		TLS:         d.etcdTLS,
		// The client's own log is not slog's; masterd logs every
		// failure of its requests itself.
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(etcdReconnect)},
	})
	if err != nil {
		return nil, fmt.Errorf("a client of etcd %v: %w", eps, err)
	}
	return cli, nil
}

// newElector returns the candidacy of the daemon d at URL self, which
// serves through a.
func (d *Daemon) newElector(cli *clientv3.Client, a *api, self string) *elector {
	return &elector{
		d: d, cli: cli, api: a, log: d.log, clock: d.opts.Clock, self: self,
		prefix: d.cfg.EtcdPrefix, priority: d.cfg.Priority, timings: timingsOf(d.cfg.LeaseTTL),
	}
}
