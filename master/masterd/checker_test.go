package masterd

import (
	"context"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestCheckerNeverCallsHTTPUnderTLS checks that masterd serving TLS
// never calls a node in the clear, should an http:// URL reach the
// check: masters call nodes over mutual TLS only.
func TestCheckerNeverCallsHTTPUnderTLS(t *testing.T) {
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	d, err := New(Config{Cert: crt, Key: key, ClientCA: pki.CA(), Listen: "127.0.0.1:0", StateDir: t.TempDir(),
		SessionTimeout: DefaultSessionTimeout, MaxSessionTimeout: DefaultSessionTimeout, MaxConns: DefaultMaxConns, HeadTimeout: DefaultHeadTimeout,
		LogFormat: "text", LogLevel: "info"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	node := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"version":"v","protocol":1,"boot_id":"b","pid":1}`))
	c := &checker{d: d, ctx: context.Background()}
	problem := c.call("http://"+node.Addr, "b")
	if !strings.Contains(problem, "http://") || node.Conns.Load() != 0 {
		t.Errorf("check of an http:// node by masterd serving TLS = %q after %d connections; want a problem, no connection", problem, node.Conns.Load())
	}
}
