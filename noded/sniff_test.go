package noded_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// checkShortLog fails the test if noded logged a line longer than a
// line about a connection needs.
func checkShortLog(t *testing.T, n *nodetest.Node) {
	t.Helper()
	for _, line := range strings.Split(n.Log(), "\n") {
		if len(line) > 500 || strings.Contains(line, `\x`) {
			t.Errorf("noded logged a line of %d bytes, or with escaped bytes: %.300q...", len(line), line)
		}
	}
}

// A TLS noded answers a plain HTTP request in plain HTTP, saying that it
// serves TLS, instead of closing without a word.
func TestPlainHTTPOnTLSPortIsAnswered(t *testing.T) {
	p := nodetest.NewPKI(t)
	n := nodetest.Start(t, nodetest.Options{TLS: p.NodeTLS(t, "localhost")})
	c := nodetest.DialFrom(t, "127.0.0.2", n.Addr())
	c.Write([]byte("GET /Version HTTP/1.1\r\nHost: node\r\n\r\n"))
	if status, kind := nodetest.ReadAnswer(t, c, 10*time.Second); status != 400 || kind != rpc.KindTLSMismatch {
		t.Errorf("plain HTTP on the TLS port answered %d %q, want 400 %q", status, kind, rpc.KindTLSMismatch)
	}
	n.AwaitLogLine(t, "refused a connection that spoke the wrong protocol", "serves_tls=true")
	checkShortLog(t, n)
}

// A plain noded answers a TLS ClientHello with plain HTTP, which the TLS
// client reads as "not TLS" at once, and logs it in one short line.
func TestTLSOnPlainPortIsRefusedAtOnce(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	raw := nodetest.DialFrom(t, "127.0.0.2", n.Addr())
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	err := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}).Handshake()
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) || !bytes.HasPrefix(rh.RecordHeader[:], []byte("HTTP/")) {
		t.Errorf("TLS handshake with a plain noded = %v, want a record header error on an HTTP answer", err)
	}
	n.AwaitLogLine(t, "refused a connection that spoke the wrong protocol", "serves_tls=false")
	checkShortLog(t, n)
}

// Binary garbage is answered as a malformed request without its bytes
// in noded's log.
func TestGarbageIsLoggedShort(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	c := nodetest.DialFrom(t, "127.0.0.2", n.Addr())
	garbage := bytes.Repeat([]byte{0x01, 0xff, 0x80, '\r', '\n', 0x00}, 700)
	c.Write(garbage)
	if status, _ := nodetest.ReadAnswer(t, c, 10*time.Second); status != 400 {
		t.Errorf("garbage answered %d, want 400", status)
	}
	n.AwaitLogLine(t, "http server")
	checkShortLog(t, n)
}
