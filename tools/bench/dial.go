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

// dialer runs the dial floor, the floor of a first contact: a bare TCP
// connection to the node and one GET /Version on it, written by hand and
// read to the end of its body, without fasthttp, the client or its retry
// policy. Its connections stay open until close, as the client's stay
// open after its first contact, so that closing them counts in neither.
// Plain HTTP only: with TLS a first contact is a handshake, which this
// floor does not make.
type dialer struct {
	nodes []string
	mu    sync.Mutex
	conns []net.Conn
}

// run is one first contact with node i; it is an op of runLoad.
func (d *dialer) run(i int) (time.Duration, error) {
	start := time.Now()
	err := d.once(d.nodes[i%len(d.nodes)])
	return time.Since(start), err
}

func (d *dialer) once(node string) error {
	c, err := net.DialTimeout("tcp", node, dialTimeout)
	if err != nil {
		return fmt.Errorf("dial floor: %w", err)
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := io.WriteString(c, "GET /Version HTTP/1.1\r\nHost: "+node+"\r\n\r\n"); err != nil {
		return fmt.Errorf("dial floor: writing to %s: %w", node, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("dial floor: reading the answer of %s: %w", node, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("dial floor: reading the answer of %s: %w", node, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("dial floor: %s answered GET /Version with %s", node, resp.Status)
	}
	return nil
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
