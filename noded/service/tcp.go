// Package service is what noded and masterd share as daemons serving
// HTTP+JSON: the TCP settings that let either end of a long-lived
// connection see a dead peer within seconds, the TLS certificate store
// reloaded on SIGHUP, the configuration file derived from the flag set,
// the systemd notifier, the refusal of a client speaking the wrong
// protocol, the checks of --listen and --insecure, and the logger.
package service

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DeadPeer says how soon a connection to a dead or cut-off peer fails.
type DeadPeer struct {
	// Idle is how long a connection is quiet before the first keepalive
	// probe; Interval the gap between probes; Count how many unanswered
	// probes end it.
	Idle, Interval time.Duration
	Count          int
	// UserTimeout (TCP_USER_TIMEOUT) ends a connection whose sent data
	// stays unacknowledged that long, which keepalive alone does not
	// cover: a peer that vanished while we had something to say.
	UserTimeout time.Duration
}

// DefaultDeadPeer sees a dead peer within about five seconds: 2 s quiet,
// then three probes a second apart; sent data unacknowledged for 5 s.
var DefaultDeadPeer = DeadPeer{Idle: 2 * time.Second, Interval: time.Second, Count: 3, UserTimeout: 5 * time.Second}

// Apply sets keepalive and TCP_USER_TIMEOUT on c, which must be a
// *net.TCPConn (or wrap one through SyscallConn).
func (d DeadPeer) Apply(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T is not a TCP connection", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		f := int(fd)
		for _, o := range []struct{ level, name, value int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, seconds(d.Idle)},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, seconds(d.Interval)},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, d.Count},
			{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.UserTimeout.Milliseconds())},
		} {
			if serr = unix.SetsockoptInt(f, o.level, o.name, o.value); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting keepalive on %s: %w", c.RemoteAddr(), serr)
	}
	return nil
}

// seconds rounds d up to whole seconds, at least one: the kernel counts
// keepalive in seconds.
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
