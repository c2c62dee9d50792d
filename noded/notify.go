package noded

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// notifier tells systemd how the daemon is doing, by the sd_notify(3)
// protocol: one datagram of "KEY=VALUE" lines to the unix socket named in
// $NOTIFY_SOCKET. The protocol is small and stable enough to speak
// directly, which keeps a dependency (and its D-Bus code) out of the
// daemon. A notifier without a socket does nothing, so noded runs the same
// outside systemd.
type notifier struct {
	addr *net.UnixAddr
	// watchdog is how often to ping: half of $WATCHDOG_USEC, as
	// sd_watchdog_enabled(3) advises; zero when systemd asked for none.
	watchdog time.Duration
}

// newNotifier returns the notifier for the given values of NOTIFY_SOCKET,
// WATCHDOG_USEC and WATCHDOG_PID in a process of PID pid.
func newNotifier(socket, watchdogUsec, watchdogPID string, pid int) (*notifier, error) {
	n := &notifier{}
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

// watchdogInterval is how often to ping systemd's watchdog; zero when it
// asked for no pings.
func (n *notifier) watchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// notify sends the state lines, e.g. "READY=1". Without a socket it does
// nothing.
func (n *notifier) notify(state ...string) error {
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
