package noded

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// UsageError is a command line or configuration noded cannot run with;
// Main exits 2 for it, so that systemd does not restart a daemon that
// would only fail again.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Main runs noded with reg's functions and returns the exit status. When
// the process was started by noded as a function process, it serves that
// one call instead.
//
// Main owns the process: it reads the command line and the service
// manager's environment, turns SIGINT and SIGTERM into the end of the
// daemon's context and SIGHUP into a reload, and exits with the daemon.
func Main(reg *backend.Registry) int {
	if backend.IsFunctionProcess() {
		return backend.ServeFunction(reg, os.Stdin, os.Stdout, os.Stderr)
	}
	// Signals are caught before anything starts: a SIGTERM that arrives
	// while noded starts must stop it cleanly, not kill it with function
	// processes left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP, whose default action would also end noded, reloads the
	// certificates instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()

	err := runCommand(ctx, reg, os.Args[1:], reload, os.Stdout, os.Stderr)
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

// runCommand parses args and runs the daemon until ctx ends. --version,
// --print-config and --check-config answer on stdout and return.
func runCommand(ctx context.Context, reg *backend.Registry, args []string, reload <-chan struct{}, stdout, stderr io.Writer) error {
	cfg, fs, err := ParseFlags(args, stdout)
	if err != nil {
		return err
	}
	switch {
	case cfg.Version:
		fmt.Fprintf(stdout, "noded %s (protocol %d)\n", rpc.Version, rpc.ProtocolVersion)
		return nil
	case cfg.PrintConfig:
		return service.WriteConfig(stdout, fs, commandLineOnly)
	}
	log, err := cfg.Logger(stderr)
	if err != nil {
		return &UsageError{err}
	}
	d, err := New(cfg, Options{Registry: reg, Logger: log, notify: service.NotifierFromEnv(log)})
	if err != nil {
		return err
	}
	if cfg.CheckConfig {
		if err := checkFunctionBinary(cfg.FunctionBinary); err != nil {
			return &UsageError{err}
		}
		source := "no configuration file, flags only"
		if cfg.ConfigFile != "" {
			source = cfg.ConfigFile
		}
		fmt.Fprintf(stdout, "noded: configuration is valid (%s)\n", source)
		return nil
	}
	return d.Run(ctx, reload)
}
