package nodetest

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// MasterdPackage is the import path of masterd, built by [StartMasterd].
const MasterdPackage = "github.com/noderpc/noderpc/master/cmd/masterd"

// MasterdOptions say how to run a masterd. The zero value runs it with
// --insecure on 127.0.0.1:0 with a state directory of its own.
type MasterdOptions struct {
	// Binary is the daemon to run; empty means masterd built by [Binary].
	Binary string
	// Flags are more command-line flags, given after the harness's own
	// (--config=, --insecure or the TLS files, --listen, --addr-file,
	// --state-dir), so that the last of a repeated flag wins.
	Flags []string
	// TLS, when set, serves HTTPS with these files (a master
	// certificate) instead of plain HTTP with --insecure.
	TLS *TLS
	// Listen is the address of the first start; empty means
	// 127.0.0.1:0. Restarts keep the address first served on.
	Listen string
	// Env are "KEY=value" entries added to the test's environment.
	Env []string
}

// Masterd is one masterd of a test, restartable on the same address and
// over the same state directory.
type Masterd struct {
	*daemon // state/, addr, logs
	opts    MasterdOptions
}

// StartMasterd starts a masterd for the test t, waits until it listens
// and returns it. The test's cleanup stops it, fails the test if it did
// not exit cleanly, outlived its stop, or its race detector reported a
// race, and logs the tail of its log when the test failed.
func StartMasterd(t testing.TB, opts MasterdOptions) *Masterd {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Binary(t, MasterdPackage)
	}
	d, err := newDaemon("masterd", opts.Binary, "masterd-"+clip(Sanitize(t.Name()), 60)+"-",
		MarkerKey+"=masterd-"+RandomHex(8), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &Masterd{daemon: d, opts: opts}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if err := m.start(listen); err != nil {
		os.RemoveAll(d.dir)
		t.Fatal(err)
	}
	t.Cleanup(func() { m.closeFor(t, true) })
	return m
}

// StateDir is masterd's --state-dir, kept across restarts.
func (m *Masterd) StateDir() string { return filepath.Join(m.dir, "state") }

// start runs a new incarnation on listen and waits until it listens.
func (m *Masterd) start(listen string) error {
	args := append(m.serveArgs(m.opts.TLS, listen), "--state-dir", m.StateDir())
	args = append(args, m.opts.Flags...)
	return m.listen(args, append(environ(), m.opts.Env...))
}

// Addr returns the host:port masterd serves on, the same for every
// incarnation.
func (m *Masterd) Addr() string { return m.address() }

// URL returns masterd's base URL, what a noded's --master takes.
func (m *Masterd) URL() string { return m.url(m.opts.TLS) }

// PID returns the process ID of the latest incarnation.
func (m *Masterd) PID() int { return m.pid() }

// Log returns what the latest incarnation has written so far.
func (m *Masterd) Log() string { return m.log() }

// LogLine returns the first line of the latest incarnation's log that
// holds every one of parts.
func (m *Masterd) LogLine(parts ...string) (string, bool) { return m.logLine(parts...) }

// AwaitLogLine polls the latest incarnation's log until a line holds
// every one of parts, and returns it; the test fails after 20s.
func (m *Masterd) AwaitLogLine(t testing.TB, parts ...string) string {
	t.Helper()
	return m.awaitLogLine(t, parts...)
}

// Signal sends sig to the latest incarnation. A SIGKILL counts as the
// end the test meant.
func (m *Masterd) Signal(sig syscall.Signal) error { return m.signal(sig) }

// Kill kills the latest incarnation with SIGKILL, as a crash would, and
// waits for it. It is idempotent.
func (m *Masterd) Kill() error { return m.kill() }

// Stop stops the latest incarnation with SIGCONT and SIGTERM, and
// SIGKILL after 30s; it returns an error unless masterd exited with
// status 0, or if it had exited by itself unnoticed. It is idempotent.
func (m *Masterd) Stop() error { return m.stopLatest() }

// Restart stops masterd ([Masterd.Stop]) and starts a new incarnation on
// the same address and state directory.
func (m *Masterd) Restart() error {
	if err := m.Stop(); err != nil {
		return err
	}
	return m.start(m.Addr())
}

// Relaunch starts a new incarnation of a masterd that was killed or has
// exited, on the same address and state directory.
func (m *Masterd) Relaunch() error {
	if err := m.exited(); err != nil {
		return err
	}
	return m.start(m.Addr())
}

// Close stops masterd, checks that no process of it outlives it and that
// the race detector reported nothing in any incarnation's log. It is
// idempotent and returns every problem it found.
func (m *Masterd) Close() error { return m.shutdown() }

// SayHello sends req to the masterd at masterURL as a node would, over
// TLS with tlsConfig when it is set, and returns the session it grants;
// anything but a session fails the test. Functions and Calls left nil go
// as empty lists.
func SayHello(t testing.TB, masterURL string, tlsConfig *tls.Config, req rpc.HelloRequest) rpc.Session {
	t.Helper()
	if req.Functions == nil {
		req.Functions = []rpc.Function{}
	}
	if req.Calls == nil {
		req.Calls = []rpc.CallSummary{}
	}
	body, err := rpc.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if tlsConfig != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tlsConfig}
	}
	hr, err := http.NewRequest(http.MethodPut, masterURL+rpc.PathHello, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(hr)
	if err != nil {
		t.Fatalf("hello of %s: %v", req.Node, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var s rpc.Session
	if resp.StatusCode != http.StatusOK || rpc.UnmarshalStrict(answer, &s, rpc.IgnoreUnknownFields) != nil {
		t.Fatalf("hello of %s = HTTP %d, %s; want a session", req.Node, resp.StatusCode, answer)
	}
	return s
}
