package noded

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// UsageError is a command line or configuration noded cannot run with;
// Main exits 2 for it, so that systemd does not restart a daemon that
// would only fail again.
type UsageError = service.UsageError

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
	// processes left behind. SIGHUP, whose default action would also end
	// noded, reloads the certificates instead.
	ctx, reload, stop := service.Signals()
	defer stop()

	err := runCommand(ctx, reg, os.Args[1:], reload, os.Stdout, os.Stderr)
	return service.ExitStatus("noded", err, os.Stderr)
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
		return service.WriteConfig(stdout, fs, service.CommandLineOnly)
	}
	log, err := cfg.Logger(stderr)
	if err != nil {
		return &UsageError{Err: err}
	}
	d, err := New(cfg, Options{Registry: reg, Logger: log, notify: service.NotifierFromEnv(log)})
	if err != nil {
		return err
	}
	if cfg.CheckConfig {
		if err := checkFunctionBinary(cfg.FunctionBinary); err != nil {
			return &UsageError{Err: err}
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
