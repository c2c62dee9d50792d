package masterd

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Main runs masterd on the process's command line and returns the exit
// status: 0, 2 for a bad command line or configuration (which a restart
// would not fix), 1 otherwise. It owns the process: SIGINT and SIGTERM
// end the daemon, SIGHUP reloads its certificates.
func Main() int {
	ctx, reload, stop := service.Signals()
	defer stop()
	err := Command(ctx, os.Args[1:], reload, os.Stdout, os.Stderr)
	return service.ExitStatus("masterd", err, os.Stderr)
}

// Command parses args and runs the daemon until ctx ends; --version,
// --print-config and --check-config answer on stdout and return.
func Command(ctx context.Context, args []string, reload <-chan struct{}, stdout, stderr io.Writer) error {
	cfg, set, err := ParseFlags(args, stdout)
	if err != nil {
		return err
	}
	switch {
	case cfg.Version:
		fmt.Fprintf(stdout, "masterd %s (protocol %d)\n", rpc.Version, rpc.ProtocolVersion)
		return nil
	case cfg.PrintConfig:
		return service.WriteConfig(stdout, set, service.CommandLineOnly)
	}
	log, err := service.Logger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return &UsageError{Err: err}
	}
	d, err := New(cfg, Options{Logger: log, Notify: service.NotifierFromEnv(log)})
	if err != nil {
		return err
	}
	if cfg.CheckConfig {
		source := "no configuration file, flags only"
		if cfg.ConfigFile != "" {
			source = cfg.ConfigFile
		}
		fmt.Fprintf(stdout, "masterd: configuration is valid (%s)\n", source)
		return nil
	}
	return d.Run(ctx, reload)
}
