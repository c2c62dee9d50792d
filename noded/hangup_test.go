package noded

import (
	"context"
	"net"
	"testing"
	"time"
)

// pair returns the server side of a loopback TCP connection and its
// client side.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// testHangups is a hang-up watcher closed when the test ends.
func testHangups(t *testing.T) *hangups {
	t.Helper()
	h, err := newHangups()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	return h
}

func TestHangupCancelsTheWait(t *testing.T) {
	h := testHangups(t)
	server, client := pair(t)
	ctx, done := h.watch(context.Background(), server)
	defer done()
	// Data from the client (a pipelined request) is not a hang-up.
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	other, otherClient := pair(t)
	otherCtx, otherDone := h.watch(context.Background(), other)
	defer otherDone()

	client.Close()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the wait of a connection whose client closed it was not cancelled within 10s")
	}
	// Only that connection's wait ends.
	if err := otherCtx.Err(); err != nil {
		t.Errorf("the wait of a connection still open ended: %v", err)
	}
	otherClient.Close()
	select {
	case <-otherCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection's hang-up was not seen")
	}
}

// A watch that ends lets its connection go: a later hang-up cancels
// nothing, and the descriptor it held is closed.
func TestHangupWatchEnds(t *testing.T) {
	h := testHangups(t)
	server, client := pair(t)
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx, done := h.watch(parent, server)
	done()
	if ctx.Err() == nil {
		t.Error("the watch's context is still live after the watch ended")
	}
	if n := watching(h); n != 0 {
		t.Errorf("%d watches held after the only one ended", n)
	}
	// The server side still works: the watch did not close it.
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(buf); err != nil {
		t.Errorf("reading the connection after its watch ended: %v", err)
	}
}

// close ends the watcher's goroutine and closes its descriptors; a watch
// asked for afterwards lives as long as its parent.
func TestHangupCloseStopsTheLoop(t *testing.T) {
	h, err := newHangups()
	if err != nil {
		t.Fatal(err)
	}
	h.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		epfd := h.epfd
		h.mu.Unlock()
		if epfd < 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher's loop still runs 10s after close")
		}
		time.Sleep(10 * time.Millisecond) // polling: the loop signals nothing else
	}
	server, _ := pair(t)
	ctx, done := h.watch(context.Background(), server)
	defer done()
	if ctx.Err() != nil {
		t.Errorf("a watch after close ended at once: %v", ctx.Err())
	}
}

// A request answered before its watch is armed puts nothing in the
// epoll set: arming is what holds a dup of the connection's descriptor.
func TestHangupWatchArmedLate(t *testing.T) {
	h := testHangups(t)
	h.armAfter = time.Hour
	server, _ := pair(t)
	ctx, done := h.watch(context.Background(), server)
	if n := watching(h); n != 0 {
		t.Errorf("%d watches in the epoll set before the first was due", n)
	}
	done()
	if ctx.Err() == nil {
		t.Error("the watch's context is still live after the watch ended")
	}
}

// A client that hung up before its request's watch was armed is seen as
// soon as the watch is: the hang-up is a state, not an event.
func TestHangupBeforeTheWatchIsArmed(t *testing.T) {
	h := testHangups(t)
	h.armAfter = 20 * time.Millisecond
	server, client := pair(t)
	client.Close()
	ctx, done := h.watch(context.Background(), server)
	defer done()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a hang-up before the watch was armed was not seen within 10s")
	}
	if n := watching(h); n != 1 {
		t.Errorf("%d watches held, want the armed one", n)
	}
}

// watching counts the connections in h's epoll set.
func watching(h *hangups) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watches)
}
