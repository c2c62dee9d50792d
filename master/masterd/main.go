package masterd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Main runs masterd on the process's command line and returns the exit
// status: 0, 2 for a bad command line or configuration (which a restart
// would not fix), 1 otherwise. It owns the process: SIGINT and SIGTERM
// end the daemon, SIGHUP reloads its certificates.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
	err := Command(ctx, os.Args[1:], reload, os.Stdout, os.Stderr)
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "masterd: %v\nRun masterd --help for the flags.\n", err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "masterd: %v\n", err)
		return 1
	}
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
		return service.WriteConfig(stdout, set, commandLineOnly)
	}
	log, err := service.Logger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return &UsageError{err}
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
