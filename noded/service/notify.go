package service

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier tells systemd how the daemon is doing, by the sd_notify(3)
// protocol: one datagram of "KEY=VALUE" lines to the unix socket named in
// $NOTIFY_SOCKET. The protocol is small and stable enough to speak
// directly, which keeps a dependency (and its D-Bus code) out of the
// daemon. A notifier without a socket does nothing, so the daemon runs the same
// outside systemd.
type Notifier struct {
	addr *net.UnixAddr
	// watchdog is how often to ping: half of $WATCHDOG_USEC, as
	// sd_watchdog_enabled(3) advises; zero when systemd asked for none.
	watchdog time.Duration
}

// NewNotifier returns the notifier for the given values of NOTIFY_SOCKET,
// WATCHDOG_USEC and WATCHDOG_PID in a process of PID pid.
func NewNotifier(socket, watchdogUsec, watchdogPID string, pid int) (*Notifier, error) {
	n := &Notifier{}
	switch {
	case socket == "":
	case strings.HasPrefix(socket, "/"), strings.HasPrefix(socket, "@"):
		// Go maps a leading '@' to Linux's abstract socket namespace.
		n.addr = &net.UnixAddr{Name: socket, Net: "unixgram"}
	default:
		return n, fmt.Errorf("NOTIFY_SOCKET=%q: only unix socket paths and @abstract names are supported", socket)
	}
	if watchdogUsec == "" {
		return n, nil
	}
	if watchdogPID != "" && watchdogPID != strconv.Itoa(pid) {
		// The watchdog is meant for another process of the unit.
		return n, nil
	}
	usec, err := strconv.ParseUint(watchdogUsec, 10, 63)
	if err != nil || usec == 0 {
		return n, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", watchdogUsec)
	}
	n.watchdog = time.Duration(usec) * time.Microsecond / 2
	return n, nil
}

// WatchdogInterval is how often to ping systemd's watchdog; zero when it
// asked for no pings.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends the state lines, e.g. "READY=1". Without a socket it does
// nothing.
func (n *Notifier) Notify(state ...string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notifying systemd on %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(state, "\n") + "\n")); err != nil {
		return fmt.Errorf("notifying systemd on %s: %w", n.addr.Name, err)
	}
	return nil
}

// NotifierFromEnv reads the service manager's variables and removes them
// from the environment, as sd_notify(3) does with unset_environment: the
// processes a daemon starts inherit its environment and must not speak
// for it. A bad variable is logged and notifies nothing.
func NotifierFromEnv(log *slog.Logger) *Notifier {
	n, err := NewNotifier(os.Getenv("NOTIFY_SOCKET"), os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(k)
	}
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}
	return n
}
