package noded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hangups cancels the context of a request whose client closed its
// connection. fasthttp does not: a handler waiting on a call would hold
// its connection slot and goroutine until its timeout although nobody
// will read the answer. One goroutine waits in epoll for EPOLLRDHUP on the
// connections of the requests that wait, so a wait costs a dup and two
// epoll_ctl calls, not a goroutine or a timer.
//
// Each watch holds a dup of the connection's descriptor: the watched file
// stays the connection's until the watch ends, even if the connection is
// closed and its descriptor number reused meanwhile.
type hangups struct {
	epfd int

	mu      sync.Mutex
	watches map[int32]context.CancelFunc // by dup'ed descriptor
	closed  bool
}

// newHangups starts the watcher; close stops it.
func newHangups() (*hangups, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	h := &hangups{epfd: epfd, watches: make(map[int32]context.CancelFunc)}
	go h.loop()
	return h, nil
}

// watch returns a context that ends with ctx or when the client of conn
// hangs up, and the function that ends the watch, which the caller must
// call before the handler returns. A connection that cannot be watched
// (not TCP, or out of descriptors) gets ctx's life only.
func (h *hangups) watch(ctx context.Context, conn net.Conn) (context.Context, func()) {
	fd, err := dupFD(conn)
	if err != nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		unix.Close(fd)
		return ctx, cancel
	}
	h.watches[int32(fd)] = cancel
	h.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR, Fd: int32(fd)}
	if err := unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		h.forget(fd)
		return ctx, cancel
	}
	return ctx, func() {
		unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		h.forget(fd)
		cancel()
	}
}

func (h *hangups) forget(fd int) {
	h.mu.Lock()
	delete(h.watches, int32(fd))
	h.mu.Unlock()
	unix.Close(fd)
}

// loop cancels the watch of each connection epoll reports hung up.
func (h *hangups) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(h.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return // the epoll descriptor was closed
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if cancel, ok := h.watches[ev.Fd]; ok {
				cancel()
				// Level-triggered: stop reporting it until the watch ends.
				unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			}
		}
		h.mu.Unlock()
	}
}

// close stops the watcher. Watches still open keep their contexts, which
// end with their parents.
func (h *hangups) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	unix.Close(h.epfd)
}

// dupFD returns a duplicate of the socket descriptor under conn, through
// TLS and noded's admission wrapper.
func dupFD(conn net.Conn) (int, error) {
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			conn = c.NetConn()
		case *admittedConn:
			conn = c.Conn
		case syscall.Conn:
			rc, err := c.SyscallConn()
			if err != nil {
				return -1, err
			}
			fd := -1
			cerr := rc.Control(func(s uintptr) {
				fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
			})
			if cerr != nil {
				return -1, cerr
			}
			return fd, err
		default:
			return -1, fmt.Errorf("connection of type %T has no descriptor", conn)
		}
	}
}
