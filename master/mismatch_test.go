package master

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// A client and a node that disagree on TLS learn it from one attempt,
// with an error that says which side serves what, and the node logs one
// short line about it.
func TestTLSMismatchIsSaidAtOnce(t *testing.T) {
	p := nodetest.NewPKI(t)
	crt, key := p.Issue(t, rpc.RoleMaster, "m")
	cfg, err := LoadTLS(crt, key, p.CA())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		node      nodetest.Options
		client    Options
		servesTLS bool
		want      string
	}{
		{"plain HTTP to a TLS node", nodetest.Options{TLS: p.NodeTLS(t, "localhost")}, Options{Insecure: true}, true, "the node serves TLS, and this client spoke plain HTTP"},
		{"TLS to a plain node", nodetest.Options{}, Options{TLS: cfg}, false, "the node serves plain HTTP (noded --insecure), and this client spoke TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodetest.Start(t, tc.node)
			c := newClient(t, n.Addr(), tc.client)
			ct := countRequests(c)
			_, err := c.Version(context.Background())
			var me *TLSMismatchError
			if !errors.As(err, &me) || !errors.Is(err, rpc.ErrTLSMismatch) {
				t.Fatalf("Version = %v (%T), want a *TLSMismatchError matching rpc.ErrTLSMismatch", err, err)
			}
			if me.NodeServesTLS != tc.servesTLS || me.Node != n.Addr() || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q (node serves TLS: %v), want it to say %q", err, me.NodeServesTLS, tc.want)
			}
			if got := ct.count(rpc.PathVersion); got != 1 {
				t.Errorf("%d attempts, want 1: a mismatch is not retried", got)
			}
			n.AwaitLogLine(t, "refused a connection that spoke the wrong protocol")
			for _, line := range strings.Split(n.Log(), "\n") {
				if len(line) > 400 {
					t.Errorf("noded logged a line of %d bytes: %.200q...", len(line), line)
				}
			}
		})
	}
}
