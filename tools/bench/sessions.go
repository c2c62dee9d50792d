package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goccy/go-json"
	"github.com/google/uuid"

	"github.com/noderpc/noderpc/master"
	"github.com/noderpc/noderpc/rpc"
)

// Sessions is a run of the session load tool: a simulated fleet of
// nodes, each saying hello to masterd and renewing its session, from one
// process, one TCP connection per session, as many nodes would.
type Sessions struct {
	// Master is masterd's host:port; it must serve plain HTTP (masterd
	// --insecure accepts a hello of any node name, which a fleet of
	// simulated nodes needs).
	Master string
	// Count is how many sessions to hold at once.
	Count int
	// Duration is how long the whole fleet renews once every session is
	// established: the window renewals per second and masterd's CPU per
	// renewal are measured over.
	Duration time.Duration
	// Hold is the hold each renewal asks for in that window: 0 renews
	// back to back, each answered at once; a node's own renewals ask for
	// most of RenewWithin instead.
	Hold time.Duration
	// HelloConcurrency bounds the hellos in flight while the fleet joins.
	HelloConcurrency int
	// Sources is how many loopback source addresses (127.0.0.1,
	// 127.0.0.2, ...) the connections are spread over, so that neither
	// the ephemeral ports of one address nor a per-address connection
	// limit of masterd caps the fleet. Used only when Master is an IPv4
	// loopback address.
	Sources int
	// Prefix names the nodes: Prefix followed by a five-digit number,
	// from 1 ("bench-00001").
	Prefix string
	// SocketTimeout bounds each request beyond its hold.
	SocketTimeout time.Duration
	// Expire, at the end, closes every connection at once and measures
	// how long masterd takes to list all the nodes down; without it every
	// session leaves.
	Expire bool
	// Poll is how often ListNodes is asked while waiting for the expiry.
	Poll time.Duration
	// MasterdPID is masterd's process, whose memory and CPU are read from
	// /proc; 0 finds it from the port it listens on (it must run on this
	// machine and as this user; if it cannot be found, the report says
	// why and has no masterd figures).
	MasterdPID int
}

// sessionAnswerMax bounds an answer of masterd to a hello or renewal: a
// session, its configuration and the masters' URLs.
const sessionAnswerMax = 1 << 20

// Check reports what is wrong with s, as MeasureSessions would.
func (s *Sessions) Check() error {
	switch {
	case s.Count < 1:
		return fmt.Errorf("want at least 1 session, got %d", s.Count)
	case s.Count > 99999:
		return fmt.Errorf("at most 99999 sessions (five-digit names), got %d", s.Count)
	case s.Duration <= 0:
		return fmt.Errorf("the renewal window must be above 0, got %s", s.Duration)
	case s.Hold < 0:
		return fmt.Errorf("the hold must not be negative, got %s", s.Hold)
	case s.HelloConcurrency < 1 || s.Sources < 1:
		return errors.New("hello concurrency and sources must be at least 1")
	case s.SocketTimeout <= 0 || s.Poll <= 0:
		return errors.New("the socket timeout and the poll interval must be above 0")
	case s.Prefix == "":
		return errors.New("the node name prefix must not be empty")
	}
	if _, port, err := net.SplitHostPort(s.Master); err != nil || port == "" {
		return fmt.Errorf("masterd address %q is not host:port", s.Master)
	}
	return nil
}

// SessionsReport is the outcome of MeasureSessions: Print writes it for
// a person, and it encodes as the JSON of noderpc --json bench sessions.
type SessionsReport struct {
	Master    string `json:"master"`
	Requested int    `json:"requested"`
	// Established is how many sessions were held at once at the end of
	// the joins.
	Established int `json:"established"`
	// HelloSeconds is from the first connection to the last session
	// established; HelloRate is Established over it.
	HelloSeconds float64 `json:"hello_seconds"`
	HelloRate    float64 `json:"hello_rate"`
	// SessionTimeout and RenewWithin are masterd's, from its answers.
	SessionTimeout float64 `json:"session_timeout"`
	RenewWithin    float64 `json:"renew_within"`
	// Hold is what each renewal of the window asked for, in seconds.
	Hold float64 `json:"hold"`
	// WindowSeconds is the renewal window; Renewals are the renewals
	// answered in it.
	WindowSeconds     float64 `json:"window_seconds"`
	Renewals          int64   `json:"renewals"`
	RenewalsPerSecond float64 `json:"renewals_per_second"`
	// Rehellos counts sessions said hello again after masterd forgot
	// them or a connection broke.
	Rehellos int64 `json:"rehellos"`
	// Errors counts failed requests by kind: masterd's error kinds, or
	// unreachable for a connection that broke or an answer that did not
	// come within the socket timeout.
	Errors map[rpc.Kind]int64 `json:"errors,omitempty"`
	// Masterd is masterd's memory and CPU; nil when its process could
	// not be read, MasterdMissing then says why.
	Masterd        *MasterdUsage `json:"masterd,omitempty"`
	MasterdMissing string        `json:"masterd_missing,omitempty"`
	// Expiry is the mass expiry, with Expire.
	Expiry *Expiry `json:"expiry,omitempty"`
}

// MasterdUsage is what masterd's process cost, read from /proc.
type MasterdUsage struct {
	PID int `json:"pid"`
	// RSSBefore is its resident memory before the first hello,
	// RSSEstablished with every session established, in bytes.
	RSSBefore      int64 `json:"rss_before"`
	RSSEstablished int64 `json:"rss_established"`
	// RSSPerSession is the growth between them over the sessions.
	RSSPerSession float64 `json:"rss_per_session"`
	// CPUSecondsJoin is its CPU time (user and system) during the joins.
	CPUSecondsJoin float64 `json:"cpu_seconds_join"`
	// CPUSecondsWindow is its CPU time in the renewal window, and
	// CPUPerRenewal that over the renewals answered in it, in seconds.
	CPUSecondsWindow float64 `json:"cpu_seconds_window"`
	CPUPerRenewal    float64 `json:"cpu_per_renewal"`
}

// Expiry is the measure of a mass expiry: every connection closed at
// once, and the time until masterd lists every node down.
type Expiry struct {
	// Seconds is from the close to the first ListNodes that shows every
	// node of the fleet down; -1 if that was not seen within the wait.
	Seconds float64 `json:"seconds"`
	// PastDeadline is how late past the last session's deadline (its
	// last renewal sent, plus the session timeout) every node was seen
	// down, within one Poll. With a hold it is the figure to read:
	// Seconds then counts from a close that came up to a hold after the
	// last renewals.
	PastDeadline float64 `json:"past_deadline"`
	// StillUp is how many nodes were still up at the last ListNodes.
	StillUp int `json:"still_up"`
	// Polls is how many ListNodes were asked.
	Polls int `json:"polls"`
}

// OK reports whether every session was established and, with Expire,
// every one seen down.
func (r *SessionsReport) OK() bool {
	return r.Established == r.Requested && (r.Expiry == nil || r.Expiry.StillUp == 0)
}

// Print writes the report for a person.
func (r *SessionsReport) Print(w io.Writer) {
	fmt.Fprintf(w, "masterd %s: %d of %d sessions established in %.2fs (%.0f hellos/s)\n",
		r.Master, r.Established, r.Requested, r.HelloSeconds, r.HelloRate)
	fmt.Fprintf(w, "session timeout %.3gs, renew within %.3gs\n", r.SessionTimeout, r.RenewWithin)
	fmt.Fprintf(w, "renewals: %d in %.2fs with hold %gs: %.0f/s\n", r.Renewals, r.WindowSeconds, r.Hold, r.RenewalsPerSecond)
	if r.Rehellos > 0 {
		fmt.Fprintf(w, "sessions said hello again: %d\n", r.Rehellos)
	}
	if len(r.Errors) > 0 {
		fmt.Fprint(w, "errors:")
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(w, " %s %d", k, r.Errors[k])
		}
		fmt.Fprintln(w)
	}
	if m := r.Masterd; m != nil {
		fmt.Fprintf(w, "masterd pid %d: RSS %.1f MiB before, %.1f MiB with the sessions (%.0f bytes per session)\n",
			m.PID, mib(m.RSSBefore), mib(m.RSSEstablished), m.RSSPerSession)
		fmt.Fprintf(w, "masterd CPU: %.2fs during the joins, %.2fs in the window: %.1fµs per renewal\n",
			m.CPUSecondsJoin, m.CPUSecondsWindow, m.CPUPerRenewal*1e6)
	} else if r.MasterdMissing != "" {
		fmt.Fprintf(w, "masterd figures: none (%s)\n", r.MasterdMissing)
	}
	if e := r.Expiry; e != nil {
		if e.Seconds < 0 {
			fmt.Fprintf(w, "mass expiry: %d nodes still up when the wait ended (%d polls)\n", e.StillUp, e.Polls)
		} else {
			fmt.Fprintf(w, "mass expiry: every node down %.2fs after the close, %.2fs past the last session's deadline (%d polls)\n",
				e.Seconds, e.PastDeadline, e.Polls)
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// MeasureSessions runs the fleet s describes against masterd and
// measures it: the fleet joins (at most s.HelloConcurrency hellos at
// once; a session renews no sooner than masterd asks while the others
// join), renews for s.Duration, then leaves, or with s.Expire drops every
// connection at once and waits for masterd to list the fleet down. ctx
// ending stops the run where it is. An error is a run that could not be
// made at all (bad Sessions, too few file descriptors).
func MeasureSessions(ctx context.Context, s Sessions) (*SessionsReport, error) {
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("bench sessions: %w", err)
	}
	if err := raiseFileLimit(s.Count + 256); err != nil {
		return nil, fmt.Errorf("bench sessions: %w", err)
	}
	r := &SessionsReport{Master: s.Master, Requested: s.Count, Hold: s.Hold.Seconds()}
	pid, missing := s.MasterdPID, ""
	if pid == 0 {
		var err error
		if pid, err = pidListeningOn(s.Master); err != nil {
			missing = err.Error()
		}
	}
	var before procSample
	if pid != 0 {
		var err error
		if before, err = sampleProc(pid); err != nil {
			pid, missing = 0, err.Error()
		}
	}
	r.MasterdMissing = missing

	f := newFleet(s)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range s.Count {
		wg.Go(func() { f.session(runCtx, i) })
	}
	// Joined: every session established, or the run cut short. A
	// session that cannot join at all keeps trying, so the joins are also
	// bounded by the time a fleet of this size may reasonably take.
	joinBound := time.NewTimer(s.SocketTimeout + time.Duration(s.Count)*time.Millisecond*10)
	select {
	case <-f.allJoined:
	case <-joinBound.C:
	case <-ctx.Done():
	}
	joinBound.Stop()
	r.Established = int(f.established.Load())
	if r.Established > 0 {
		r.HelloSeconds = time.Duration(f.lastJoin.Load() - start.UnixNano()).Seconds()
		r.HelloRate = float64(r.Established) / r.HelloSeconds
	}
	r.SessionTimeout, r.RenewWithin = f.timeouts()

	var joined procSample
	if pid != 0 {
		var err error
		if joined, err = sampleProc(pid); err != nil {
			pid, r.MasterdMissing = 0, err.Error()
		}
	}
	// The window: every session renews back to back with s.Hold.
	close(f.window)
	renewed0, t0 := f.renewals.Load(), time.Now()
	windowEnd := time.NewTimer(s.Duration)
	select {
	case <-windowEnd.C:
	case <-ctx.Done():
	}
	windowEnd.Stop()
	r.WindowSeconds = time.Since(t0).Seconds()
	r.Renewals = f.renewals.Load() - renewed0
	r.RenewalsPerSecond = float64(r.Renewals) / r.WindowSeconds
	if pid != 0 {
		if after, err := sampleProc(pid); err != nil {
			r.MasterdMissing = err.Error()
		} else {
			m := &MasterdUsage{
				PID: pid, RSSBefore: before.rss, RSSEstablished: joined.rss,
				CPUSecondsJoin:   joined.cpu - before.cpu,
				CPUSecondsWindow: after.cpu - joined.cpu,
			}
			if r.Established > 0 {
				m.RSSPerSession = float64(joined.rss-before.rss) / float64(r.Established)
			}
			if r.Renewals > 0 {
				m.CPUPerRenewal = m.CPUSecondsWindow / float64(r.Renewals)
			}
			r.Masterd = m
		}
	}

	if s.Expire {
		closedAt := time.Now()
		f.drop.Store(true)
		stop()
		wg.Wait()
		r.Expiry = f.awaitExpiry(ctx, closedAt, r.SessionTimeout)
	} else {
		stop()
		wg.Wait()
	}
	r.Rehellos = f.rehellos.Load()
	r.Errors = f.errorCounts()
	return r, nil
}

// fleet is the state the sessions of a run share.
type fleet struct {
	s       Sessions
	sources []net.Addr // local addresses to dial from; nil: any
	hellos  chan struct{}
	// window is closed when the renewal window opens.
	window chan struct{}
	// drop, when set, makes the sessions close their connections without
	// leaving (Expire).
	drop atomic.Bool

	established atomic.Int64
	lastJoin    atomic.Int64 // UnixNano of the last first hello answered
	allJoined   chan struct{}
	renewals    atomic.Int64
	rehellos    atomic.Int64
	// lastSent is, per session, the UnixNano its last hello or renewal
	// was sent at: its session's deadline is a timeout after.
	lastSent []atomic.Int64

	mu          sync.Mutex
	errs        map[rpc.Kind]int64
	timeout     float64
	renewWithin float64
}

func newFleet(s Sessions) *fleet {
	f := &fleet{
		s:         s,
		hellos:    make(chan struct{}, s.HelloConcurrency),
		window:    make(chan struct{}),
		allJoined: make(chan struct{}),
		errs:      map[rpc.Kind]int64{},
		lastSent:  make([]atomic.Int64, s.Count),
	}
	host, _, _ := net.SplitHostPort(s.Master)
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() && s.Sources > 1 {
		for i := range min(s.Sources, 254) {
			f.sources = append(f.sources, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
		}
	}
	return f
}

func (f *fleet) countError(err error) {
	kind := rpc.KindOf(err)
	if kind == "" {
		kind = rpc.KindUnreachable
	}
	f.mu.Lock()
	f.errs[kind]++
	f.mu.Unlock()
}

func (f *fleet) errorCounts() map[rpc.Kind]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs
}

func (f *fleet) timeouts() (timeout, renewWithin float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeout, f.renewWithin
}

// session is one simulated node: it says hello and renews until ctx
// ends, then leaves (or, with drop, just closes its connection). A
// broken connection or a session masterd forgot is dialled and said
// hello again, after a pause that spreads such returns out.
func (f *fleet) session(ctx context.Context, i int) {
	name := fmt.Sprintf("%s%05d", f.s.Prefix, i+1)
	hello := rpc.HelloRequest{
		Node: name,
		// Nothing calls a simulated node: port 9 is the discard service.
		URL:       "http://127.0.0.1:9",
		Version:   "bench",
		Protocol:  rpc.ProtocolVersion,
		BootID:    uuid.NewString(),
		Functions: []rpc.Function{},
		Calls:     []rpc.CallSummary{},
	}
	helloBody, err := rpc.Marshal(&hello)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding a hello: %v", err)) // rpc types always encode
	}
	var src net.Addr
	if len(f.sources) > 0 {
		src = f.sources[i%len(f.sources)]
	}
	first := true
	for ctx.Err() == nil {
		f.lastSent[i].Store(time.Now().UnixNano())
		c, sess, err := f.join(ctx, src, helloBody)
		if err != nil {
			if ctx.Err() == nil {
				f.countError(err)
				pause(ctx, time.Duration(rand.Int64N(int64(time.Second))))
			}
			continue
		}
		if first {
			first = false
			f.joined(sess)
		} else {
			f.rehellos.Add(1)
		}
		err = f.renew(ctx, c, &f.lastSent[i], name, sess)
		switch {
		case ctx.Err() != nil && f.drop.Load():
			c.close()
			return
		case ctx.Err() != nil:
			c.leave(name, sess.ID, f.s.SocketTimeout)
			c.close()
			return
		}
		f.countError(err)
		c.close()
	}
}

// join dials masterd from src and says hello, within the hello bound.
func (f *fleet) join(ctx context.Context, src net.Addr, helloBody []byte) (*httpConn, *rpc.Session, error) {
	select {
	case f.hellos <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-f.hellos }()
	d := net.Dialer{LocalAddr: src, Timeout: f.s.SocketTimeout}
	nc, err := d.DialContext(ctx, "tcp", f.s.Master)
	if err != nil {
		return nil, nil, err
	}
	c := newHTTPConn(nc, f.s.Master)
	var sess rpc.Session
	if err := c.do(rpc.PathHello, helloBody, time.Now().Add(f.s.SocketTimeout), &sess); err != nil {
		c.close()
		return nil, nil, err
	}
	return c, &sess, nil
}

// joined counts a session established for the first time.
func (f *fleet) joined(sess *rpc.Session) {
	f.mu.Lock()
	f.timeout, f.renewWithin = sess.Timeout, sess.RenewWithin
	f.mu.Unlock()
	f.lastJoin.Store(time.Now().UnixNano())
	if f.established.Add(1) == int64(f.s.Count) {
		close(f.allJoined)
	}
}

// renew renews the session on c until ctx ends (nil) or a renewal fails
// (its error). Before the window opens it renews halfway through
// RenewWithin, as late as is safe, so that renewals do not slow the
// joins; in the window, back to back with the hold asked for.
func (f *fleet) renew(ctx context.Context, c *httpConn, lastSent *atomic.Int64, name string, sess *rpc.Session) error {
	stop := context.AfterFunc(ctx, func() {
		if f.drop.Load() {
			// Every connection closed at once, whatever it is doing.
			c.nc.Close()
		}
	})
	defer stop()
	req := rpc.RenewRequest{Node: name, Session: sess.ID, GroupVersion: sess.GroupVersion, ConfigVersion: sess.ConfigVersion}
	inWindow := false
	for {
		if !inWindow {
			wait := time.NewTimer(time.Duration(sess.RenewWithin / 2 * float64(time.Second)))
			select {
			case <-wait.C:
			case <-f.window:
				inWindow = true
			case <-ctx.Done():
			}
			wait.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
		req.Hold = 0
		if inWindow {
			req.Hold = f.s.Hold.Seconds()
		}
		body, err := rpc.Marshal(&req)
		if err != nil {
			panic(fmt.Sprintf("bench: encoding a renewal: %v", err))
		}
		var next rpc.Session
		hold := time.Duration(req.Hold * float64(time.Second))
		lastSent.Store(time.Now().UnixNano())
		if err := c.do(rpc.PathRenew, body, time.Now().Add(hold+f.s.SocketTimeout), &next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f.renewals.Add(1)
		req.GroupVersion, req.ConfigVersion = next.GroupVersion, next.ConfigVersion
		if next.RenewWithin > 0 {
			sess.RenewWithin = next.RenewWithin
		}
	}
}

// awaitExpiry asks masterd for its nodes every Poll until none of the
// fleet is up, or until three session timeouts and the socket timeout
// have passed since closedAt.
func (f *fleet) awaitExpiry(ctx context.Context, closedAt time.Time, timeout float64) *Expiry {
	e := &Expiry{Seconds: -1}
	cl, err := master.NewCluster([]string{"http://" + f.s.Master}, master.Options{Insecure: true, Timeout: f.s.SocketTimeout})
	if err != nil {
		f.countError(err)
		return e
	}
	defer cl.Close()
	bound := closedAt.Add(time.Duration(3*timeout*float64(time.Second)) + f.s.SocketTimeout)
	tick := time.NewTicker(f.s.Poll)
	defer tick.Stop()
	for {
		e.Polls++
		list, err := cl.Nodes(ctx)
		at := time.Now()
		if err != nil {
			f.countError(err)
		} else {
			e.StillUp = 0
			for _, n := range list.Nodes {
				if n.State == rpc.NodeUp && strings.HasPrefix(n.Name, f.s.Prefix) {
					e.StillUp++
				}
			}
			if e.StillUp == 0 {
				e.Seconds = at.Sub(closedAt).Seconds()
				e.PastDeadline = at.Sub(f.lastDeadline(timeout)).Seconds()
				return e
			}
		}
		if at.After(bound) {
			return e
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return e
		}
	}
}

// lastDeadline is the latest deadline of the fleet's sessions, each a
// timeout (in seconds) after its last request was sent.
func (f *fleet) lastDeadline(timeout float64) time.Time {
	var latest int64
	for i := range f.lastSent {
		latest = max(latest, f.lastSent[i].Load())
	}
	return time.Unix(0, latest).Add(time.Duration(timeout * float64(time.Second)))
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// httpConn is one keep-alive HTTP/1.1 connection to masterd, spoken by
// hand: ten thousand of them must cost little more than their sockets,
// where a fasthttp.HostClient per session would bring its pools, and one
// shared client would not hold a connection per session.
type httpConn struct {
	nc   net.Conn
	r    *bufio.Reader
	host string
	buf  []byte
}

func newHTTPConn(nc net.Conn, host string) *httpConn {
	return &httpConn{nc: nc, r: bufio.NewReaderSize(nc, 1024), host: host}
}

func (c *httpConn) close() { c.nc.Close() }

// leave sends the session's leave, best effort: masterd expires a
// session that does not leave.
func (c *httpConn) leave(node, session string, timeout time.Duration) {
	body, err := rpc.Marshal(&rpc.LeaveRequest{Node: node, Session: session})
	if err == nil {
		c.do(rpc.PathLeave, body, time.Now().Add(timeout), nil)
	}
}

// do sends PUT path with body and reads the answer by deadline into out
// (nil: discarded). A non-2xx answer is its *rpc.Error.
func (c *httpConn) do(path string, body []byte, deadline time.Time, out any) error {
	c.nc.SetDeadline(deadline)
	c.buf = append(c.buf[:0], "PUT "...)
	c.buf = append(c.buf, path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, c.host...)
	c.buf = append(c.buf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(body)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, body...)
	if _, err := c.nc.Write(c.buf); err != nil {
		return err
	}
	status, answer, err := c.read()
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return rpc.DecodeErrorAnswer(status, answer)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return rpc.Errorf(rpc.KindProtocolError, "masterd answered %s with a malformed body: %v", path, err)
	}
	return nil
}

// read reads one answer: its status and its body, which must declare its
// length, as masterd's always do.
func (c *httpConn) read() (status int, body []byte, err error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, nil, rpc.Errorf(rpc.KindProtocolError, "not an HTTP status line: %q", line)
	}
	if status, err = strconv.Atoi(string(f[1])); err != nil {
		return 0, nil, rpc.Errorf(rpc.KindProtocolError, "bad HTTP status %q", f[1])
	}
	length := -1
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || length < 0 {
				return 0, nil, rpc.Errorf(rpc.KindProtocolError, "bad Content-Length %q", v)
			}
		}
	}
	if length < 0 || length > sessionAnswerMax {
		return 0, nil, rpc.Errorf(rpc.KindProtocolError, "answer of length %d: want a declared length of at most %d", length, sessionAnswerMax)
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return status, body, nil
}

// raiseFileLimit raises the soft limit of open files to its hard limit
// and fails if that is below need.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising the open files limit: %w", err)
		}
	}
	if lim.Cur < uint64(need) {
		return fmt.Errorf("the open files limit is %d, and the sessions need %d: raise the hard limit (ulimit -Hn)", lim.Cur, need)
	}
	return nil
}

// procSample is a process's resident memory in bytes and CPU time (user
// and system) in seconds.
type procSample struct {
	rss int64
	cpu float64
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

func sampleProc(pid int) (procSample, error) {
	rss, _, err := procStatus(pid)
	if err != nil {
		return procSample{}, fmt.Errorf("reading masterd's memory: %w", err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("reading masterd's CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted are those after it, state first (field 3 of proc(5)).
	_, after, ok := bytes.Cut(b, []byte(") "))
	f := bytes.Fields(after)
	if !ok || len(f) < 13 {
		return procSample{}, fmt.Errorf("reading masterd's CPU time: /proc/%d/stat is malformed", pid)
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}, fmt.Errorf("reading masterd's CPU time: /proc/%d/stat is malformed", pid)
	}
	return procSample{rss: rss, cpu: float64(utime+stime) / clockTicks}, nil
}

// pidListeningOn finds the process listening on addr's port, from
// /proc/net/tcp and tcp6 and the sockets among the open files of the
// processes this user may read.
func pidListeningOn(addr string) (int, error) {
	_, p, _ := net.SplitHostPort(addr)
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", p, err)
	}
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			f := bytes.Fields(line)
			// sl local_address rem_address st ... inode (field 10)
			if len(f) < 10 || string(f[3]) != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := bytes.Cut(f[1], []byte(":"))
			if lp, err := strconv.ParseUint(string(hexPort), 16, 16); err == nil && lp == port {
				inodes["socket:["+string(f[9])+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process of this machine listens on port %d: give --masterd-pid", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && inodes[target] {
				return strconv.Atoi(filepath.Base(filepath.Dir(dir)))
			}
		}
	}
	return 0, fmt.Errorf("the process listening on port %d is not one this user can read: give --masterd-pid", port)
}
