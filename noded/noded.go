// Package noded is the node daemon: it serves the noderpc protocol over
// HTTP and runs each function call in a process of its own.
//
// A program builds its own noded with its own functions by registering
// them and handing the registry to Main:
//
//	func main() {
//		reg := backend.NewRegistry()
//		backend.RegisterBuiltins(reg)
//		reg.Register("hello", hello)
//		os.Exit(noded.Main(reg))
//	}
//
// The same binary then serves both as the daemon and, re-executed by it,
// as the function process for each call.
//
// Main owns the process (flags, signals, environment); a Daemon is built
// from a Config by New and runs until its context ends, so a program or a
// test can run several in one process.
package noded

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"github.com/google/renameio/v2"
	"github.com/google/uuid"
	"github.com/oklog/run"
	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/noded/functions"
	"github.com/noderpc/noderpc/noded/membership"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Options are what a daemon takes from the program that runs it rather
// than from its configuration.
type Options struct {
	// Registry holds the Go functions; nil means none.
	Registry *backend.Registry
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger

	// notify tells systemd how the daemon is doing; Main sets it from
	// the environment it owns, nil does nothing.
	notify *service.Notifier
}

// Daemon is one node daemon: a job table, the HTTP server in front of it,
// and the tasks around them (certificate reloads, retention, systemd's
// watchdog).
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	reg    *backend.Registry
	notify *service.Notifier
	certs  *service.CertStore // nil: plain HTTP (--insecure)
}

// New checks cfg and loads the TLS material it names. It starts nothing:
// no listener, no process, no goroutine; Run does. Errors in cfg, the
// certificate files included, are *UsageError: a restart would not fix
// them.
func New(cfg Config, opts Options) (*Daemon, error) {
	if err := cfg.validate(); err != nil {
		return nil, &UsageError{Err: err}
	}
	d := &Daemon{cfg: cfg, log: opts.Logger, reg: opts.Registry, notify: opts.notify}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Insecure {
		certs, err := service.NewCertStore(cfg.tlsFiles(), time.Now)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		d.certs = certs
		if err := checkNodeCert(cfg, certs.Current()); err != nil {
			return nil, &UsageError{Err: err}
		}
	}
	return d, nil
}

// checkNodeCert refuses, when noded says hello to masters, a certificate
// masterd would refuse every hello from: one naming another node, or one
// made for serving only (issued before node certificates carried client
// auth).
func checkNodeCert(cfg Config, leaf *x509.Certificate) error {
	if len(cfg.Masters) == 0 {
		return nil
	}
	if leaf.Subject.CommonName != cfg.NodeName {
		return fmt.Errorf("--cert %s names %q, and --node-name is %q: masterd takes a hello only from the certificate of the node it names; pass --node-name %s or the node's own certificate",
			cfg.Cert, leaf.Subject.CommonName, cfg.NodeName, leaf.Subject.CommonName)
	}
	if eku := leaf.ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, x509.ExtKeyUsageClientAuth) && !slices.Contains(eku, x509.ExtKeyUsageAny) {
		return fmt.Errorf("--cert %s is not a client certificate too (no client auth key usage), which saying hello to a master needs: issue it again with noderpc certs issue --node %s", cfg.Cert, leaf.Subject.CommonName)
	}
	return nil
}

// Run serves until ctx ends, then stops every function process and
// returns nil once all are reaped. Each receive from reload reloads the
// certificates. Run is called once.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	jobs.KillOrphans(d.log)
	bin, err := functions.OpenBinary(d.cfg.FunctionBinary)
	if err != nil {
		return &UsageError{Err: err}
	}
	defer bin.Close()
	d.logFunctionBinary(bin)
	m := newMetrics()
	fns := &functions.Resolver{Registry: d.reg, Self: bin.Exec(), SelfName: bin.Path, Procs: d.cfg.FunctionProcs, Dir: d.cfg.FunctionsDir}
	table, err := jobs.New(d.jobsConfig(m, fns))
	if err != nil {
		return err
	}
	m.watch(table, d.cfg.MaxRunning)
	hangups, err := newHangups()
	if err != nil {
		d.stopTable(table)
		return err
	}
	defer hangups.close()
	ln, err := d.listen(m.connectionCounts())
	if err != nil {
		d.stopTable(table)
		return err
	}
	m.watchConnections(ln)
	a := &api{
		table:      table,
		functions:  fns,
		log:        d.log,
		metrics:    m,
		tls:        d.certs != nil,
		bodies:     &budget{max: d.cfg.MaxBodies},
		maxRequest: d.cfg.MaxRequest,
		hangups:    hangups,
		version: rpc.VersionResponse{
			Version:   rpc.Version,
			Protocol:  rpc.ProtocolVersion,
			BootID:    uuid.NewString(),
			StartedAt: table.Started(),
			PID:       os.Getpid(),
		},
	}
	srv := newServer(a, &d.cfg, ln, d.log)
	d.logServing(ln.Addr().String(), a.version.BootID, table.Containment())
	// The listening socket already queues connections, so noded is ready
	// for systemd, and for units ordered after it, from here on.
	if err := d.notify.Notify("READY=1", "STATUS=serving on "+ln.Addr().String()); err != nil {
		d.log.Warn("telling systemd noded is ready", "err", err)
	}

	var g run.Group
	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) {})
	member, err := d.member(ln.Addr().String(), a.version.BootID, fns, table)
	if err != nil {
		d.stopTable(table)
		ln.Close()
		return &UsageError{Err: err}
	}
	m.set.NewGauge("noded_master_session", func() float64 {
		if member != nil && member.Held() {
			return 1
		}
		return 0
	})
	if member != nil {
		// Before the server: run.Group interrupts actors in the order
		// they were added, and this interrupt returns once the leave is
		// sent (within membership.LeaveTimeout), so masters list the
		// node down before it refuses new calls.
		mctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.Add(func() error {
			defer close(done)
			member.Run(mctx)
			return nil
		}, func(error) {
			cancel()
			<-done
		})
	}
	g.Add(service.Actor(func(stop <-chan struct{}) { service.ReloadCerts(d.log, "noded", d.certs, reload, stop) }))
	g.Add(service.Actor(func(stop <-chan struct{}) { d.expire(table, stop) }))
	var stopErr error
	g.Add(func() error {
		return srv.Serve(ln)
	}, func(error) {
		stopErr = d.shutdown(table, srv, ln)
	})
	// Added after the server, whose interrupt returns only once every
	// function is reaped: run.Group interrupts actors in the order they
	// were added, so the pings go on through the shutdown, which
	// systemd's watchdog also covers.
	if d.notify.WatchdogInterval() > 0 {
		g.Add(service.Actor(func(stop <-chan struct{}) { d.watchdog(table, stop) }))
	}
	if err = g.Run(); err == nil {
		err = stopErr
	}
	if err == nil {
		d.log.Info("noded stopped")
	}
	return err
}

// shutdown stops the daemon in its one order:
//
//  1. the job table refuses new starts (shutting_down) while the server
//     still answers waits, lists and versions;
//  2. every function process gets SIGTERM, and SIGKILL after the grace;
//     each waiter wakes as its call ends;
//  3. once every process is reaped, the server stops accepting and
//     closes its idle connections, and has a moment to write the answers
//     of the waits that woke;
//  4. every connection still open, in its handshake or request head or
//     writing, is closed.
func (d *Daemon) shutdown(table *jobs.Table, srv *fasthttp.Server, ln *admission) error {
	running, _ := table.Counts()
	d.log.Info("shutting down: stopping every function", "running", running, "grace", d.cfg.ShutdownGrace)
	if err := d.notify.Notify("STOPPING=1", fmt.Sprintf("STATUS=stopping %d running calls", running)); err != nil {
		d.log.Warn("telling systemd noded is stopping", "err", err)
	}
	err := d.stopTable(table)
	if err != nil {
		err = fmt.Errorf("function processes not reaped after SIGKILL: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerGrace)
	defer cancel()
	if serr := srv.ShutdownWithContext(ctx); serr != nil {
		d.log.Debug("connections still open after the last answers", "err", serr)
	}
	ln.closeAll()
	return err
}

// answerGrace is how long the server has, once every function is reaped,
// to write the answers of the waits that woke.
const answerGrace = 2 * time.Second

// stopTable stops every function and waits for the reap. SIGKILL follows
// SIGTERM after the grace; the margin covers the reap of processes stuck
// in the kernel for a moment.
func (d *Daemon) stopTable(table *jobs.Table) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownGrace+5*time.Second)
	defer cancel()
	return table.Shutdown(ctx)
}

// member is the node's membership of the group of its --master list,
// nil without one. addr is the address served on.
func (d *Daemon) member(addr, bootID string, fns *functions.Resolver, table *jobs.Table) (*membership.Member, error) {
	if len(d.cfg.Masters) == 0 {
		return nil, nil
	}
	cfg := membership.Config{
		Masters:        d.cfg.Masters,
		Node:           d.cfg.NodeName,
		URL:            d.cfg.advertised(addr),
		BootID:         bootID,
		SessionTimeout: d.cfg.SessionTimeout,
		Facts: func() ([]rpc.Function, []rpc.CallSummary) {
			return fns.List(), table.List()
		},
		Logger: d.log.With("component", "membership"),
	}
	if d.certs != nil {
		cfg.TLS = d.masterTLS
	}
	return membership.New(cfg)
}

// masterTLS is the configuration of a connection to a master at
// serverName: the node's certificate in force and the cluster CA. Read
// at each dial, so a SIGHUP reload applies to the next connection.
func (d *Daemon) masterTLS(serverName string) (*tls.Config, error) {
	cfg := d.certs.ClientConfig()
	cfg.ServerName = serverName
	return cfg, nil
}

// listen opens the listening socket, behind the connection limits and in
// TLS unless --insecure, and writes --addr-file.
func (d *Daemon) listen(counts admissionCounts) (*admission, error) {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	addr := ln.Addr().String()
	var tlsConfig *tls.Config
	if d.certs != nil {
		tlsConfig = d.certs.ListenerConfig()
	}
	// A connection that finds noded full waits for one of the holders'
	// head timeout to pass, and a second more.
	adm := newAdmission(ln, d.cfg.MaxConns, d.cfg.MaxConnsPerIP, d.cfg.HeadTimeout+time.Second, tlsConfig, counts, d.log)
	if d.cfg.AddrFile != "" {
		// Through a rename, so a reader never sees half an address.
		if err := renameio.WriteFile(d.cfg.AddrFile, []byte(addr+"\n"), 0o644); err != nil {
			adm.Close()
			return nil, fmt.Errorf("writing --addr-file: %w", err)
		}
	}
	return adm, nil
}

// logServing says noded serves, and how: TLS or not, and how calls are
// contained (cgroup or process-group), which the operator needs to know
// to trust that no process outlives its call.
func (d *Daemon) logServing(addr, bootID string, containment jobs.Containment) {
	if d.certs == nil {
		d.log.Warn("serving plain HTTP without authentication (--insecure)", "addr", addr)
	} else {
		d.log.Info("serving HTTPS to clients with a certificate of the cluster CA",
			append([]any{"addr", addr, "client_ca", d.cfg.ClientCA}, service.CertAttrs(d.certs.Current())...)...)
	}
	d.log.Info("noded serving", "addr", addr, "version", rpc.Version, "pid", os.Getpid(), "boot_id", bootID, "containment", containment)
}

// jobsConfig is the job table's configuration: cfg's limits, the
// functions (Go ones run by the program fns.Self, "" for noded's own
// binary), and the daemon's logger and metrics.
func (d *Daemon) jobsConfig(m *daemonMetrics, fns *functions.Resolver) jobs.Config {
	jc := d.cfg.jobsConfig()
	jc.Resolver = fns
	jc.WarmSpec = functions.GoProcess(fns.Self, fns.SelfName, fns.Procs)
	jc.Logger = d.log
	jc.Observer = m
	return jc
}

// logFunctionBinary says which program runs the Go functions: an
// operator who sees calls start slowly learns from it whether the lean
// function binary was found.
func (d *Daemon) logFunctionBinary(bin *functions.Binary) {
	if bin.Path != "" {
		d.log.Info("Go functions run in the function binary", "path", bin.Path)
		return
	}
	self, _ := os.Executable()
	d.log.Info("Go functions run in noded's own binary; a function binary beside it starts each call faster",
		"want", self+functions.BinarySuffix)
}

// expire drops finished calls past the retention period until stop is
// closed.
func (d *Daemon) expire(table *jobs.Table, stop <-chan struct{}) {
	tick := time.NewTicker(janitorPeriod(d.cfg.Retention))
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			if n := table.Expire(now); n > 0 {
				d.log.Debug("dropped finished calls past retention", "count", n)
			}
		case <-stop:
			return
		}
	}
}

// janitorPeriod checks often enough that a call is dropped within a tenth
// of the retention after it is due, and no more than once a second.
func janitorPeriod(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Minute)
}

// watchdog pings systemd's watchdog until stop is closed. Each ping
// follows a look at the job table, so a daemon whose table is deadlocked
// stops pinging and is restarted, not just one whose process is gone.
func (d *Daemon) watchdog(table *jobs.Table, stop <-chan struct{}) {
	tick := time.NewTicker(d.notify.WatchdogInterval())
	defer tick.Stop()
	for {
		running, finished := table.Counts()
		if err := d.notify.Notify("WATCHDOG=1", fmt.Sprintf("STATUS=%d calls running, %d finished held", running, finished)); err != nil {
			d.log.Warn("pinging systemd's watchdog", "err", err)
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
