package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// dialTimeout bounds one first contact of the dial floor: its
// connection, its request and its answer.
const dialTimeout = 10 * time.Second

// BareContact is the dial floor's first contact with node, the floor of a
// client's: a TCP connection and one GET /Version on it, written by hand
// and read to the end of its body with net/http's parser, without
// master's client or its retry policy, all within timeout. Plain HTTP
// only: with TLS a first contact is a handshake, which it does not make.
// It returns the connection, open, whenever the dial succeeded, even if
// the request then failed; the caller closes it.
func BareContact(node string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", node, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET /Version HTTP/1.1\r\nHost: "+node+"\r\n\r\n"); err != nil {
		return c, fmt.Errorf("writing to %s: %w", node, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, fmt.Errorf("reading the answer of %s: %w", node, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return c, fmt.Errorf("reading the answer of %s: %w", node, err)
	case resp.StatusCode != http.StatusOK:
		return c, fmt.Errorf("%s answered GET /Version with %s", node, resp.Status)
	}
	return c, nil
}

// dialer runs the dial floor: BareContact with each node in turn. Its
// connections stay open until close, as the client's stay open after its
// first contact, so that closing them counts in neither.
type dialer struct {
	nodes []string
	mu    sync.Mutex
	conns []net.Conn
}

// run is one first contact with node i; it is an op of runLoad.
func (d *dialer) run(i int) (time.Duration, error) {
	start := time.Now()
	c, err := BareContact(d.nodes[i%len(d.nodes)], dialTimeout)
	elapsed := time.Since(start)
	if c != nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	if err != nil {
		return elapsed, fmt.Errorf("dial floor: %w", err)
	}
	return elapsed, nil
}

// close closes every connection the floor opened.
func (d *dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}
