package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/noderpc/noderpc/rpc"
)

// UsageError is a command line or configuration a daemon cannot run
// with; [ExitStatus] makes it exit 2, so that systemd does not restart a
// daemon that would only fail again.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Signals returns a context that SIGINT and SIGTERM end, and a channel
// that receives once for each SIGHUP (a reload; one pending at most),
// whose default action would also end the daemon. stop releases the
// signals. A daemon's Main calls it before anything starts: a SIGTERM
// that arrives while the daemon starts must stop it cleanly.
func Signals() (ctx context.Context, reload <-chan struct{}, stop func()) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reloads := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	return ctx, reloads, func() {
		signal.Stop(hup)
		cancel()
	}
}

// ExitStatus writes err, the end of the daemon called name, to stderr
// and returns the process's exit status: 0 for none (or --help), 2 for a
// *UsageError, 1 otherwise.
func ExitStatus(name string, err error, stderr io.Writer) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v\nRun %s --help for the flags.\n", name, err, name)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}

// CommandLineOnly are the flags every daemon has that say what it should
// do this time rather than how it runs: they are not keys of the
// configuration file. Every other flag is a key of the same name.
var CommandLineOnly = map[string]bool{
	"config":       true,
	"check-config": true,
	"print-config": true,
	"version":      true,
}

// ParseFlags parses the command line of the daemon name, whose flags
// define sets up, with the configuration file it names (or the default
// one, when it exists) under it (see Parse). --help writes usage and the
// flags to help and returns flag.ErrHelp. A bad command line or file is a
// *UsageError and writes nothing: its one line says what is wrong, not
// the whole usage around it. The flag set is returned for --print-config.
func ParseFlags(name, usage string, args []string, help io.Writer, configFile *string, define func(*flag.FlagSet)) (*flag.FlagSet, error) {
	set := flag.NewFlagSet(name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	define(set)
	set.Usage = func() {} // the flag package would call it for errors too
	if err := Parse(set, args, configFile, CommandLineOnly); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			set.SetOutput(help)
			fmt.Fprint(help, usage)
			set.PrintDefaults()
			return set, err
		}
		return set, &UsageError{Err: err}
	}
	return set, nil
}

// Parse parses args into set's flags, with the values of the
// configuration file *configFile (set's --config) under those of the
// command line. The default file is optional, a daemon runs on flags
// alone: when it does not exist and --config was not given, *configFile
// is set to "". Flags of commandLineOnly may not be in the file. A value
// a flag does not parse is an error that says what the flag wants.
func Parse(set *flag.FlagSet, args []string, configFile *string, commandLineOnly map[string]bool) error {
	if err := set.Parse(args); err != nil {
		return withWant(set, err)
	}
	if set.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", set.Args())
	}
	onCommandLine := make(map[string]bool)
	set.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	if *configFile == "" {
		return nil
	}
	data, err := os.ReadFile(*configFile)
	if errors.Is(err, fs.ErrNotExist) && !onCommandLine["config"] {
		*configFile = ""
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the configuration file: %w", err)
	}
	if err := ApplyConfig(set, data, onCommandLine, commandLineOnly); err != nil {
		return fmt.Errorf("configuration file %s: %w", *configFile, err)
	}
	return nil
}

// badValue matches the flag package's errors for a value its flag does
// not parse, which end in a bare "parse error": "invalid value %q for
// flag -%s", and "invalid boolean value %q for -%s" for a switch.
var badValue = regexp.MustCompile(`^invalid (?:boolean )?value ".*" for (?:flag )?-([a-z-]+): `)

// withWant adds to a flag's parse error what the flag wants.
func withWant(fs *flag.FlagSet, err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[1])
	if f == nil {
		return err
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err
	}
	var want string
	switch g.Get().(type) {
	case time.Duration:
		want = `a duration with its unit, such as "500ms", "10s" or "15m"`
	case int, int64, uint, uint64:
		want = "an integer"
	case bool:
		want = "true or false, as --" + f.Name + "=false"
	default:
		return err
	}
	return fmt.Errorf("%w; want %s", err, want)
}

// ReloadCerts reloads certs at each receive from reload, until stop is
// closed, and logs the outcome. A reload that fails changes nothing; nil
// certs (plain HTTP, --insecure) have nothing to reload. name is the
// daemon's, for the log.
func ReloadCerts(log *slog.Logger, name string, certs *CertStore, reload, stop <-chan struct{}) {
	for {
		select {
		case <-reload:
			if certs == nil {
				log.Info("SIGHUP: nothing to reload, " + name + " serves plain HTTP (--insecure)")
				continue
			}
			leaf, err := certs.Reload()
			if err != nil {
				log.Error("SIGHUP: certificates not reloaded, the previous ones stay in use", "err", err)
				continue
			}
			log.Info("SIGHUP: certificates reloaded; new connections use them", CertAttrs(leaf)...)
		case <-stop:
			return
		}
	}
}

// Actor adapts a task that runs until stop is closed to run.Group.
func Actor(task func(stop <-chan struct{})) (execute func() error, interrupt func(error)) {
	stop := make(chan struct{})
	return func() error {
			task(stop)
			return nil
		}, func(error) {
			close(stop)
		}
}

// RecoverPanic, deferred by a request handler, answers internal for a
// handler that panicked and logs the panic with its stack:
// a bug in one request must not end the daemon called name and all it
// serves. fasthttp itself does not recover.
func RecoverPanic(ctx *fasthttp.RequestCtx, log *slog.Logger, name string) {
	v := recover()
	if v == nil {
		return
	}
	log.Error("panic serving a request", "path", string(ctx.Path()), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	ctx.ResetBody()
	ctx.SetConnectionClose()
	WriteError(ctx, rpc.Errorf(rpc.KindInternal, "%s failed serving this request; its log has the details", name))
}
