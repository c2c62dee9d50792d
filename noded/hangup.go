package noded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// hangups cancels the context of a request whose client closed its
// connection. fasthttp does not: a handler waiting on a call would hold
// its connection slot and goroutine until its timeout although nobody
// will read the answer. One goroutine waits in epoll for EPOLLRDHUP on the
// connections of the requests that wait, so a wait costs a dup and two
// epoll_ctl calls, not a goroutine.
//
// A connection is watched only once its request has waited armAfter:
// most calls answer well within it (a warm call in about a millisecond, a
// cold one in a few), and those cost a runtime timer instead of four
// system calls. A client that hangs up sooner holds its slot until then
// at most; EPOLLRDHUP is level-triggered, so a hang-up before the watch
// is armed is reported as soon as it is.
//
// Each watch holds a dup of the connection's descriptor: the watched file
// stays the connection's until the watch ends, even if the connection is
// closed and its descriptor number reused meanwhile.
type hangups struct {
	epfd int
	wake int // an eventfd in the epoll set: written by close to end loop

	armAfter time.Duration // how long a request waits before it is watched

	mu      sync.Mutex
	next    uint32            // the token of the next watch
	watches map[uint32]*watch // by token, the epoll data of its descriptor
	closed  bool
}

// watch is one connection watched: its dup'ed descriptor, and how to end
// the wait of the request on it.
type watch struct {
	fd     int
	cancel context.CancelFunc
}

// wakeToken is the epoll data of the eventfd; watches count up from 1.
const wakeToken = 0

// watchAfter is how long a request waits before its connection is
// watched for a hang-up (see hangups).
const watchAfter = 50 * time.Millisecond

// newHangups starts the watcher; close stops it.
func newHangups() (*hangups, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeToken}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	h := &hangups{epfd: epfd, wake: wake, armAfter: watchAfter, watches: make(map[uint32]*watch)}
	go h.loop()
	return h, nil
}

// watch returns a context that ends with ctx or when the client of conn
// hangs up, and the function that ends the watch, which the caller must
// call before the handler returns: conn is read only until then. The
// connection is watched from h.armAfter on; a connection that cannot be
// watched (not TCP, or out of descriptors) gets ctx's life only.
func (h *hangups) watch(ctx context.Context, conn net.Conn) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu    sync.Mutex
		ended bool
		token uint32 // the armed watch's; 0 while none
	)
	arm := time.AfterFunc(h.armAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		// Under mu, the end function waits for this arming to finish:
		// conn is still the request's while it is read here.
		if !ended {
			token = h.arm(conn, cancel)
		}
	})
	return ctx, func() {
		arm.Stop()
		mu.Lock()
		ended = true
		t := token
		mu.Unlock()
		if t != 0 {
			h.forget(t)
		}
		cancel()
	}
}

// arm puts a dup of conn's descriptor in the epoll set, so that its
// hang-up calls cancel, and returns the watch's token, or 0 if conn
// cannot be watched or the watcher is closed.
func (h *hangups) arm(conn net.Conn, cancel context.CancelFunc) uint32 {
	fd, err := dupFD(conn)
	if err != nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.epfd < 0 {
		unix.Close(fd)
		return 0
	}
	// Events carry a token of the watch, not the descriptor: a
	// descriptor number is reused as soon as it is closed, and a stale
	// event must not end the wait of another request.
	h.next++
	if h.next == wakeToken {
		h.next++
	}
	token := h.next
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR, Fd: int32(token)}
	if err := unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return 0
	}
	h.watches[token] = &watch{fd: fd, cancel: cancel}
	return token
}

// forget ends a watch: out of the epoll set, its descriptor closed. The
// epoll descriptor is only used under h.mu, where loop closes it: a
// closed descriptor's number may be reused at once, by the runtime's own
// poller among others.
func (h *hangups) forget(token uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.watches[token]
	if !ok {
		return
	}
	delete(h.watches, token)
	if h.epfd >= 0 {
		unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	}
	unix.Close(w.fd)
}

// loop cancels the wait of each connection epoll reports hung up, until
// close wakes it.
func (h *hangups) loop() {
	defer func() {
		h.mu.Lock()
		unix.Close(h.epfd)
		unix.Close(h.wake)
		h.epfd = -1
		h.mu.Unlock()
	}()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(h.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if w, ok := h.watches[uint32(ev.Fd)]; ok {
				w.cancel()
				// Level-triggered: stop reporting it until the watch ends.
				unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
			}
		}
		h.mu.Unlock()
	}
}

// close stops the watcher. Watches still open keep their contexts, which
// end with their parents; their descriptors are closed when they end.
func (h *hangups) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	// An eventfd counts in a uint64 of host byte order; any value but
	// zero makes it readable.
	unix.Write(h.wake, []byte{1, 0, 0, 0, 0, 0, 0, 1})
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
