package noded_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/noded"
	"github.com/noderpc/noderpc/rpc"
)

// Two daemons run in one process, each with its own table, listener and
// metrics: New and Run change nothing process-wide.
func TestTwoDaemonsInOneProcess(t *testing.T) {
	a := startInProcess(t, "--warm", "0")
	b := startInProcess(t, "--warm", "1")
	for _, d := range []*inProcess{a, b} {
		if err := d.echo(); err != nil {
			t.Fatalf("echo on %s: %v", d.addr, err)
		}
	}
	va, err := a.client.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.client.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if va.BootID == vb.BootID {
		t.Errorf("both daemons answered boot id %s, want one each", va.BootID)
	}
	calls, err := a.client.ListCalls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if c.State != rpc.StateSucceeded {
			t.Errorf("daemon %s holds call %s in state %s, want only its own finished echo", a.addr, c.ID, c.State)
		}
	}
}

// New checks the configuration and starts nothing, so a bad one is a
// *noded.UsageError and a good one needs no Run to be let go.
func TestNewChecksConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // empty: valid
	}{
		{"valid", []string{"--insecure", "--listen", "127.0.0.1:0"}, ""},
		{"off loopback", []string{"--insecure", "--listen", "0.0.0.0:0"}, "loopback"},
		{"no TLS files", []string{"--listen", "127.0.0.1:0"}, "--cert FILE"},
		{"missing cert file", []string{"--cert", "/nonexistent.crt", "--key", "/nonexistent.key", "--client-ca", "/nonexistent-ca.crt"}, "nonexistent"},
		{"bad log level", []string{"--insecure", "--log-level", "loud"}, "--log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNew(t, tc.args, tc.want)
		})
	}
}

// checkNew parses args (without a configuration file) and checks that
// New refuses them with a *UsageError containing want, or, when want is
// empty, accepts them.
func checkNew(t *testing.T, args []string, want string) {
	t.Helper()
	cfg, _, err := noded.ParseFlags(append([]string{"--config", ""}, args...), io.Discard)
	if err != nil {
		t.Fatalf("ParseFlags(%q): %v", args, err)
	}
	_, err = noded.New(cfg, noded.Options{})
	var usage *noded.UsageError
	switch {
	case want == "" && err != nil:
		t.Errorf("New(%q) = %v, want nil", args, err)
	case want != "" && (!errors.As(err, &usage) || !strings.Contains(err.Error(), want)):
		t.Errorf("New(%q) = %v, want a *UsageError containing %q", args, err, want)
	}
}
