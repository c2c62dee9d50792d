package service

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestApplySetsTheKernelOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := DeadPeer{Idle: 1500 * time.Millisecond, Interval: time.Second, Count: 4, UserTimeout: 3 * time.Second}
	if err := d.Apply(c); err != nil {
		t.Fatal(err)
	}
	raw, _ := c.(*net.TCPConn).SyscallConn()
	_ = raw.Control(func(fd uintptr) {
		for name, want := range map[string]struct{ level, opt, value int }{
			"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 2},
			"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1},
			"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 4},
			"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 3000},
		} {
			got, err := unix.GetsockoptInt(int(fd), want.level, want.opt)
			if err != nil || got != want.value {
				t.Errorf("%s = %d (%v), want %d", name, got, err, want.value)
			}
		}
	})
}

func TestApplyRefusesWhatIsNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := DefaultDeadPeer.Apply(a); err == nil {
		t.Fatal("Apply on a pipe succeeded")
	}
}
