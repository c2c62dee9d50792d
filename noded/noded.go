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
package noded

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/run"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/noded/functions"
	"github.com/noderpc/noderpc/rpc"
)

// UsageError is a command line noded cannot run with; Main exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Main runs noded with reg's functions and returns the exit status. When
// the process was started by noded as a function process, it serves that
// one call instead.
func Main(reg *backend.Registry) int {
	if backend.IsFunctionProcess() {
		return backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr)
	}
	err := Run(context.Background(), reg, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "noded: %v\nRun noded --help for the flags.\n", err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "noded: %v\n", err)
		return 1
	}
}

// Run runs the daemon until ctx ends or it receives SIGINT or SIGTERM, then
// stops every function and returns nil once all are reaped.
func Run(ctx context.Context, reg *backend.Registry, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg Config
	fs := flag.NewFlagSet("noded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: noded [flags]

noded runs functions on this node for a noderpc master: each call in a
process of its own, answered within the caller's timeout with the result
or a function-call ID to wait on again. See doc/protocol.md, and
doc/operations.md for the systemd unit, the configuration file and the
metrics.

noded serves HTTPS only and requires a client certificate that chains
to the cluster CA (doc/security.md); make them with noderpc certs.
SIGHUP reloads --cert, --key and --client-ca.

Examples:
  noded --cert /etc/noded/node1.crt --key /etc/noded/node1.key \
        --client-ca /etc/noded/ca.crt --listen 0.0.0.0:1811
  noded --insecure --listen 127.0.0.1:1811   # plain HTTP, loopback only

Every flag but --config, --check-config, --print-config and --version is
also a key of the configuration file (TOML), e.g. max-running = 500.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := cfg.parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err}
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "noded %s (protocol %d)\n", rpc.Version, rpc.ProtocolVersion)
		return nil
	}
	if cfg.PrintConfig {
		return writeConfig(stdout, fs)
	}
	log, err := cfg.validate(stderr)
	if err != nil {
		return &UsageError{err}
	}
	// Bad certificate files are a configuration error, found by
	// --check-config too, and a restart would not fix them.
	var certs *certStore
	if !cfg.Insecure {
		if certs, err = newCertStore(cfg.tlsFiles(), time.Now); err != nil {
			return &UsageError{err}
		}
	}
	if cfg.CheckConfig {
		source := "no configuration file, flags only"
		if cfg.ConfigFile != "" {
			source = cfg.ConfigFile
		}
		fmt.Fprintf(stdout, "noded: configuration is valid (%s)\n", source)
		return nil
	}
	sd, err := notifierFromEnv()
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}

	// Signals are caught from here on: a SIGTERM that arrives while noded
	// starts must stop it cleanly, not kill it with function processes
	// left behind. SIGHUP, whose default action would also end noded,
	// reloads the certificates instead.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	m := newMetrics()
	jc := cfg.jobsConfig()
	jc.Resolver = &functions.Resolver{Registry: reg, Dir: cfg.FunctionsDir}
	jc.WarmSpec = functions.GoProcess("")
	jc.Logger = log
	jc.Observer = m
	jobs.KillOrphans(log)
	table, err := jobs.New(jc)
	if err != nil {
		return err
	}
	m.watch(table, cfg.MaxRunning)

	// From here on a failure must still stop the table, which may have
	// warm function processes running.
	abort := func(err error) error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+5*time.Second)
		defer cancel()
		table.Shutdown(sctx)
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return abort(fmt.Errorf("listening: %w", err))
	}
	addr := ln.Addr().String()
	if certs != nil {
		ln = tls.NewListener(ln, certs.listenerConfig())
	}
	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, []byte(addr+"\n")); err != nil {
			ln.Close()
			return abort(fmt.Errorf("writing --addr-file: %w", err))
		}
	}
	a := &api{
		table:   table,
		log:     log,
		metrics: m,
		tls:     certs != nil,
		version: rpc.VersionResponse{
			Version:   rpc.Version,
			Protocol:  rpc.ProtocolVersion,
			BootID:    uuid.NewString(),
			StartedAt: table.Started(),
			PID:       os.Getpid(),
		},
	}
	srv := newServer(a, &cfg, log)
	if certs == nil {
		log.Warn("serving plain HTTP without authentication (--insecure)", "addr", addr)
	} else {
		log.Info("serving HTTPS to clients with a certificate of the cluster CA", append([]any{"addr", addr, "client_ca", cfg.ClientCA}, certAttrs(certs.current())...)...)
	}
	log.Info("noded serving", "addr", addr, "version", rpc.Version, "pid", os.Getpid(), "boot_id", a.version.BootID)

	var g run.Group
	stopSignals := make(chan struct{})
	g.Add(func() error {
		select {
		case sig := <-sigc:
			return run.SignalError{Signal: sig}
		case <-ctx.Done():
			return ctx.Err()
		case <-stopSignals:
			return nil
		}
	}, func(error) { close(stopSignals) })

	hupStop := make(chan struct{})
	g.Add(func() error {
		reloadOnHangup(certs, hup, hupStop, log)
		return nil
	}, func(error) { close(hupStop) })

	// The listening socket already queues connections, so noded is ready
	// for systemd, and for units ordered after it, from here on.
	if err := sd.notify("READY=1", "STATUS=serving on "+addr); err != nil {
		log.Warn("telling systemd noded is ready", "err", err)
	}

	// The job table stops first: new starts are refused with
	// shutting_down while the server still answers, and every waiter is
	// woken by its call's end.
	stopTable := make(chan struct{})
	drained := make(chan struct{})
	var stopOnce sync.Once
	g.Add(func() error {
		<-stopTable
		running, _ := table.Counts()
		log.Info("shutting down: stopping every function", "running", running, "grace", cfg.ShutdownGrace)
		if err := sd.notify("STOPPING=1", fmt.Sprintf("STATUS=stopping %d running calls", running)); err != nil {
			log.Warn("telling systemd noded is stopping", "err", err)
		}
		// SIGKILL follows SIGTERM after the grace; the margin covers the
		// reap of processes stuck in the kernel for a moment.
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+5*time.Second)
		defer cancel()
		defer close(drained)
		if err := table.Shutdown(sctx); err != nil {
			return fmt.Errorf("function processes not reaped after SIGKILL: %w", err)
		}
		return nil
	}, func(error) {
		stopOnce.Do(func() { close(stopTable) })
	})

	g.Add(func() error {
		return srv.Serve(ln)
	}, func(error) {
		<-drained
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(sctx); err != nil {
			log.Warn("closing connections", "err", err)
		}
	})

	if sd.watchdog > 0 {
		// Added after the server, whose interrupt returns only once
		// every function is reaped: the pings go on through the
		// shutdown, which systemd's watchdog also covers.
		watchdogStop := make(chan struct{})
		g.Add(func() error {
			return watchdog(sd, table, watchdogStop, log)
		}, func(error) { close(watchdogStop) })
	}

	janitorStop := make(chan struct{})
	g.Add(func() error {
		tick := time.NewTicker(janitorPeriod(cfg.Retention))
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				if n := table.Expire(now); n > 0 {
					log.Debug("dropped finished calls past retention", "count", n)
				}
			case <-janitorStop:
				return nil
			}
		}
	}, func(error) { close(janitorStop) })

	err = g.Run()
	var sig run.SignalError
	if errors.As(err, &sig) || errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		log.Info("noded stopped")
	}
	return err
}

// watchdog pings systemd's watchdog until stop is closed. Each ping
// follows a look at the job table, so a daemon whose table is deadlocked
// stops pinging and is restarted, not just one whose process is gone.
func watchdog(sd *notifier, table *jobs.Table, stop <-chan struct{}, log *slog.Logger) error {
	tick := time.NewTicker(sd.watchdog)
	defer tick.Stop()
	for {
		running, finished := table.Counts()
		if err := sd.notify("WATCHDOG=1", fmt.Sprintf("STATUS=%d calls running, %d finished held", running, finished)); err != nil {
			log.Warn("pinging systemd's watchdog", "err", err)
		}
		select {
		case <-tick.C:
		case <-stop:
			return nil
		}
	}
}

// validate checks c as Run would run it and returns its logger.
func (c *Config) validate(stderr io.Writer) (*slog.Logger, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	given := c.Cert != "" || c.Key != "" || c.ClientCA != ""
	switch {
	case c.Insecure && given:
		return nil, errors.New("--insecure serves plain HTTP, which takes no --cert, --key or --client-ca: drop one or the other")
	case c.Insecure:
		if err := checkLoopback(c.Listen); err != nil {
			return nil, err
		}
	case c.Cert == "" || c.Key == "" || c.ClientCA == "":
		return nil, errors.New("noded serves HTTPS with client certificates: pass --cert FILE --key FILE --client-ca FILE " +
			"(keys cert, key and client-ca of the configuration file; make them with noderpc certs init and noderpc certs issue --node NAME), " +
			"or --insecure to serve plain HTTP on a loopback --listen address")
	}
	return newLogger(c.LogFormat, c.LogLevel, stderr)
}

// janitorPeriod checks often enough that a call is dropped within a tenth
// of the retention after it is due, and no more than once a second.
func janitorPeriod(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Minute)
}

// checkLoopback refuses a plain-HTTP listen address that is not loopback:
// whoever reaches noded can run anything on the node.
func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--insecure refuses --listen %q: plain HTTP is only served on loopback addresses (127.0.0.1, ::1)", listen)
	}
	return nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// writeFileAtomic writes data to path through a rename, so a reader never
// sees half an address.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".noded-addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
