// Package masterd is the master daemon: nodes say hello to it and hold a
// session it renews; it knows every node, up or down, with the facts of
// its last hello, and the configuration of the group and of each node,
// and keeps them in a registry.Store across restarts. doc/membership.md
// describes the exchange and its rules.
//
// With --etcd, several masterds share one registry in etcd and one of
// them, elected through etcd, is active; the others answer not_active
// naming it and take over when it is gone (election.go, doc/ha.md).
//
// Main owns the process; a Daemon is built from a Config by New and runs
// until its context ends, so a test can run several in one process.
package masterd

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/google/renameio/v2"
	"github.com/oklog/run"

	"github.com/noderpc/noderpc/master/registry"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Options are what a daemon takes from the program that runs it rather
// than from its configuration.
type Options struct {
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Store is the registry of a single master (no Config.Etcd); nil
	// opens the bbolt one in Config.StateDir. Run closes it either way.
	// With Config.Etcd the registry is in etcd and Store is unused.
	Store registry.Store
	// Clock runs the sessions; nil is the system's.
	Clock Clock
	// Notify tells systemd how the daemon is doing; nil does nothing.
	Notify *service.Notifier
	// Listener, if set, is served instead of one opened on Config.Listen.
	Listener net.Listener
}

// Daemon is one master daemon.
type Daemon struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	certs *service.CertStore // nil: plain HTTP (--insecure)
	// etcdTLS is the etcd client's TLS, nil for plain etcd.
	etcdTLS *tls.Config
}

// New checks cfg and loads the TLS material it names. It starts nothing
// and opens no file but the certificates; Run does. Errors in cfg are
// *UsageError.
func New(cfg Config, opts Options) (*Daemon, error) {
	if err := cfg.validate(); err != nil {
		return nil, &UsageError{Err: err}
	}
	d := &Daemon{cfg: cfg, opts: opts, log: opts.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.opts.Clock == nil {
		d.opts.Clock = realClock{}
	}
	if !cfg.Insecure {
		certs, err := service.NewCertStore(cfg.tlsFiles(), time.Now)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		d.certs = certs
	}
	if cfg.EtcdCert != "" {
		t, err := cfg.etcdTLSConfig()
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		d.etcdTLS = t
	}
	return d, nil
}

// Run serves until ctx ends. Each receive from reload reloads the
// certificates. Run is called once.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	var store registry.Store
	if d.cfg.Etcd == "" {
		store = d.opts.Store
		if store == nil {
			b, err := registry.OpenBolt(d.cfg.StateDir)
			if err != nil {
				return err
			}
			store = b
			d.log.Info("registry opened", "path", b.Path())
		}
		defer store.Close()
	}
	ln, err := d.listen()
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	self := d.cfg.advertised(addr)
	a := &api{self: self, log: d.log, tls: d.certs != nil}
	ln.headers = a.groupVersionHeader
	var g run.Group
	if store != nil {
		ms, err := loadMembers(store, d.opts.Clock, d.log, d.cfg.SessionTimeout, d.cfg.MaxSessionTimeout, self, d.certs != nil)
		if err != nil {
			ln.Close()
			return err
		}
		checks := newChecker(d, ms)
		defer checks.stop()
		if d.cfg.CheckNodes {
			ms.joined = checks.start
		}
		a.setActive(ms, nil)
	} else {
		// A standby until elected; the election runs next to the
		// server.
		a.setStandby("")
		cli, err := d.etcdClient()
		if err != nil {
			ln.Close()
			return err
		}
		defer cli.Close()
		el := d.newElector(cli, a, self)
		ectx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			el.run(ectx)
			return nil
		}, func(error) { cancel() })
	}
	srv := newServer(a, &d.cfg, d.log)
	if d.cfg.AddrFile != "" {
		// Through a rename, so a reader never sees half an address.
		if err := renameio.WriteFile(d.cfg.AddrFile, []byte(addr+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("writing --addr-file: %w", err)
		}
	}
	d.logServing(addr, self)
	if err := d.opts.Notify.Notify("READY=1", "STATUS=serving on "+addr); err != nil {
		d.log.Warn("telling systemd masterd is ready", "err", err)
	}

	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) {})
	g.Add(service.Actor(func(stop <-chan struct{}) { service.ReloadCerts(d.log, "masterd", d.certs, reload, stop) }))
	g.Add(func() error {
		return srv.Serve(ln)
	}, func(error) {
		d.log.Info("shutting down")
		d.opts.Notify.Notify("STOPPING=1")
		// Held renewals answer at once, so the shutdown does not wait
		// for their holds; no node is marked down on disk: a restarted
		// masterd marks them all down itself, and a master elected
		// after this one waits for their hellos.
		if ms := a.members(); ms != nil {
			ms.close()
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.ShutdownWithContext(sctx); err != nil {
			d.log.Debug("connections still open at the end of the shutdown", "err", err)
		}
	})
	if err := g.Run(); err != nil {
		return err
	}
	d.log.Info("masterd stopped")
	return nil
}

// shutdownGrace is how long open connections have to take their last
// answers when masterd stops.
const shutdownGrace = 2 * time.Second

// listen opens the listening socket, in TLS unless --insecure; every
// connection gets the TCP settings that see a dead peer within seconds.
func (d *Daemon) listen() (*listener, error) {
	ln := d.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", d.cfg.Listen); err != nil {
			return nil, fmt.Errorf("listening: %w", err)
		}
	}
	l := &listener{Listener: ln, log: d.log}
	if d.certs != nil {
		l.tls = d.certs.ListenerConfig()
	}
	return l, nil
}

// listener sets service.DefaultDeadPeer on each connection it accepts,
// checks the protocol of its first bytes, and wraps it in TLS when
// masterd serves TLS.
type listener struct {
	net.Listener
	tls *tls.Config
	log *slog.Logger
	// headers are the header lines of a refusal: the group version,
	// which every answer carries.
	headers func() string
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := service.DefaultDeadPeer.Apply(c); err != nil {
		l.log.Warn("a connection without keepalive: a dead node is seen only when its session lapses", "remote", c.RemoteAddr().String(), "err", err)
	}
	// A client speaking plain HTTP to TLS, or TLS to plain HTTP, is told
	// so instead of seeing the connection drop.
	c = &service.SniffConn{Conn: c, ServesTLS: l.tls != nil, Daemon: "masterd", Log: l.log, Headers: l.headers}
	if l.tls != nil {
		return tls.Server(c, l.tls), nil
	}
	return c, nil
}

func (d *Daemon) logServing(addr, self string) {
	if d.certs == nil {
		d.log.Warn("serving plain HTTP without authentication (--insecure)", "addr", addr)
	} else {
		d.log.Info("serving HTTPS to clients with a certificate of the cluster CA",
			append([]any{"addr", addr, "client_ca", d.cfg.ClientCA}, service.CertAttrs(d.certs.Current())...)...)
	}
	attrs := []any{"addr", addr, "url", self, "version", rpc.Version, "pid", os.Getpid(),
		"session_timeout", d.cfg.SessionTimeout, "max_session_timeout", d.cfg.MaxSessionTimeout}
	if d.cfg.Etcd != "" {
		attrs = append(attrs, "etcd", d.cfg.Etcd, "etcd_prefix", d.cfg.EtcdPrefix, "lease_ttl", d.cfg.LeaseTTL, "priority", d.cfg.Priority)
	}
	d.log.Info("masterd serving", attrs...)
}
