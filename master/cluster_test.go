package master

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

func TestNewClusterRefusesBadURLs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		urls     []string
		insecure bool
		want     string
	}{
		{"none", nil, true, "no masterd URL given"},
		{"host:port", []string{"127.0.0.1:1812"}, true, `URL "127.0.0.1:1812": want http://host:port`},
		{"another scheme", []string{"ftp://m1:1812"}, false, "want https://host:port"},
		{"https while insecure", []string{"https://m1:1812"}, true, "it serves TLS, and this client talks plain HTTP"},
		{"http with TLS", []string{"http://m1:1812"}, false, "it serves plain HTTP (run with --insecure)"},
		{"no port", []string{"http://m1"}, true, "no port"},
		{"a path", []string{"http://m1:1812/api"}, true, "without a path or query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Insecure: tc.insecure}
			if !tc.insecure {
				opts.TLS = &tls.Config{}
			}
			c, err := NewCluster(tc.urls, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCluster(%q) = %v, %v; want an error holding %q", tc.urls, c, err, tc.want)
			}
			if len(tc.urls) > 0 && !errors.Is(err, rpc.ErrBadRequest) {
				t.Errorf("NewCluster(%q) error %v does not match rpc.ErrBadRequest", tc.urls, err)
			}
		})
	}
}

// deadPort is a loopback address nothing listens on.
func deadPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// With every master unreachable, each is tried once in turn and the
// error names them all; with one, its own error is returned.
func TestClusterNoMasterAnswers(t *testing.T) {
	a, b := deadPort(t), deadPort(t)
	fast := Options{Insecure: true, Timeout: time.Second, Retry: RetryPolicies{List: Policy{MaxAttempts: 1}}}
	c, err := NewCluster([]string{"http://" + a, "http://" + b, "http://" + a}, fast)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Masters(); len(got) != 2 {
		t.Errorf("Masters() = %q, want the two distinct masters", got)
	}
	_, err = c.Nodes(context.Background())
	var nm *NoMasterError
	if !errors.As(err, &nm) || len(nm.Errs) != 2 || !errors.Is(err, rpc.ErrUnreachable) ||
		!strings.Contains(err.Error(), a+": unreachable") || !strings.Contains(err.Error(), b+": unreachable") {
		t.Fatalf("Nodes() with two dead masters = %v; want a *NoMasterError naming both unreachable", err)
	}

	one, err := NewCluster([]string{"http://" + a}, fast)
	if err != nil {
		t.Fatal(err)
	}
	var ue *UnreachableError
	if _, err := one.Config(context.Background(), ""); !errors.As(err, &ue) || ue.Node != a {
		t.Errorf("Config() with one dead master = %v; want its *UnreachableError", err)
	}
}

func TestClusterRefusesBadRequestsUnsent(t *testing.T) {
	c, err := NewCluster([]string{"http://" + deadPort(t)}, Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Node(ctx, ""); !errors.Is(err, rpc.ErrBadRequest) {
		t.Errorf("Node(\"\") = %v, want bad_request", err)
	}
	for _, req := range []rpc.SetConfigRequest{
		{},
		{Set: rpc.Config{"a": []byte("1")}, Delete: []string{"a"}},
	} {
		if _, err := c.SetConfig(ctx, req); !errors.Is(err, rpc.ErrBadRequest) {
			t.Errorf("SetConfig(%+v) = %v, want bad_request before anything is sent", req, err)
		}
	}
}
