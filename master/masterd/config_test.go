package masterd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestParseFlags checks flags, the configuration file under them, and
// the refusals of what masterd cannot run with.
func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "masterd.conf")
	os.WriteFile(file, []byte("session-timeout = \"4s\"\nstate-dir = \"/from/file\"\n"), 0o644)
	cfg, _, err := ParseFlags([]string{"--config", file, "--insecure", "--state-dir", "/from/flag"}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if cfg.SessionTimeout != 4*time.Second || cfg.StateDir != "/from/flag" || !cfg.Insecure {
		t.Errorf("ParseFlags = timeout %s, state dir %s, insecure %v; want 4s from the file, /from/flag from the flag, true", cfg.SessionTimeout, cfg.StateDir, cfg.Insecure)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("validate of a good configuration: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--session-timeout", "10ms", "--insecure"}, "--session-timeout must be at least"},
		{[]string{"--max-session-timeout", "5s", "--insecure"}, "--max-session-timeout (5s) must be at least"},
		{[]string{"--insecure", "--listen", "0.0.0.0:1812"}, "loopback"},
		{[]string{"--cert", "x"}, "--cert FILE --key FILE --client-ca FILE"},
		{[]string{"--insecure", "--cert", "x"}, "takes no --cert"},
		{[]string{"--insecure", "--advertise", "https://m:1812"}, "want a http:// URL"},
		{[]string{"--insecure", "--advertise", "http://m"}, "HOST:PORT"},
		{[]string{"--insecure", "--state-dir", ""}, "--state-dir is required"},
		{[]string{"--insecure", "--log-level", "loud"}, "--log-level"},
		{[]string{"--insecure", "--etcd", "127.0.0.1"}, "want HOST:PORT or http(s)://HOST:PORT"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379,"}, `endpoint ""`},
		{[]string{"--insecure", "--etcd", "ftp://etcd1"}, "want HOST:PORT or http(s)://HOST:PORT"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:etcd"}, "want HOST:PORT or http(s)://HOST:PORT"},
		{[]string{"--insecure", "--etcd", ":2379"}, "want HOST:PORT or http(s)://HOST:PORT"},
		{[]string{"--insecure", "--etcd", "http://127.0.0.1:2379/x"}, "nothing after the port"},
		{[]string{"--insecure", "--etcd-cert", "c"}, "they need --etcd"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379", "--etcd-cert", "c"}, "all of --etcd-cert, --etcd-key and --etcd-ca, or none"},
		{[]string{"--insecure", "--etcd", "http://127.0.0.1:2379", "--etcd-cert", "c", "--etcd-key", "k", "--etcd-ca", "a"}, "not spoken to over TLS"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379", "--etcd-prefix", "noderpc"}, "--etcd-prefix must start with /"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379", "--etcd-prefix", "/noderpc/"}, "--etcd-prefix must start with /"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379", "--lease-ttl", "1s"}, "--lease-ttl must be at least 2s"},
		{[]string{"--insecure", "--etcd", "127.0.0.1:2379", "--lease-ttl", "2500ms"}, "whole seconds"},
	} {
		cfg, _, err := ParseFlags(append([]string{"--config="}, tc.args...), nil)
		if err == nil {
			err = cfg.validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("masterd %q: %v; want an error saying %q", tc.args, err, tc.want)
		}
	}
	good, _, err := ParseFlags([]string{"--config=", "--insecure", "--etcd", "127.0.0.1:2379, http://127.0.0.2:2379", "--lease-ttl", "3s", "--priority", "-2"}, nil)
	if err == nil {
		err = good.validate()
	}
	if eps, _ := good.etcdEndpoints(); err != nil || good.Priority != -2 || good.LeaseTTL != 3*time.Second || !slices.Equal(eps, []string{"127.0.0.1:2379", "http://127.0.0.2:2379"}) {
		t.Errorf("masterd --etcd ... = %v, endpoints %q, priority %d, TTL %s; want valid, two endpoints, -2, 3s", err, eps, good.Priority, good.LeaseTTL)
	}
	_, _, err = ParseFlags([]string{"--config=", "--nope"}, nil)
	var usage *UsageError
	if !errors.As(err, &usage) {
		t.Errorf("ParseFlags(--nope) = %v, want a *UsageError", err)
	}
}

// TestPrintConfigRoundTrip checks that --print-config writes a file that
// reads back to the same configuration.
func TestPrintConfigRoundTrip(t *testing.T) {
	args := []string{"--config=", "--insecure", "--session-timeout", "7s", "--max-session-timeout", "70s", "--state-dir", "/s", "--check-nodes=false"}
	var out bytes.Buffer
	if err := Command(t.Context(), append(args, "--print-config"), nil, &out, &out); err != nil {
		t.Fatalf("--print-config: %v", err)
	}
	path := filepath.Join(t.TempDir(), "masterd.conf")
	os.WriteFile(path, out.Bytes(), 0o644)
	want, _, _ := ParseFlags(args, nil)
	got, _, err := ParseFlags([]string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("reading the printed configuration: %v\n%s", err, out.String())
	}
	got.ConfigFile, want.ConfigFile = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configuration read back = %+v\nwant %+v\nfile:\n%s", got, want, out.String())
	}
}

// TestAdvertised checks masterd's own URL when --advertise is not given.
func TestAdvertised(t *testing.T) {
	for _, tc := range []struct {
		cfg    Config
		served string
		want   string
	}{
		{Config{Insecure: true}, "127.0.0.1:1812", "http://127.0.0.1:1812"},
		{Config{}, "0.0.0.0:1812", "https://127.0.0.1:1812"},
		{Config{}, "[::]:1812", "https://[::1]:1812"},
		{Config{Advertise: "https://m1:1812"}, "0.0.0.0:1812", "https://m1:1812"},
	} {
		if got := tc.cfg.advertised(tc.served); got != tc.want {
			t.Errorf("advertised(%s) with --advertise %q = %s, want %s", tc.served, tc.cfg.Advertise, got, tc.want)
		}
	}
}

// TestEtcdTLSFiles checks that New refuses etcd TLS files it cannot
// load, as a usage error naming the flag.
func TestEtcdTLSFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	pki := nodetest.NewPKI(t)
	crt, key := pki.Issue(t, rpc.RoleMaster, "m1")
	for _, tc := range []struct {
		cert, key, ca, want string
	}{
		{filepath.Join(dir, "missing.crt"), notPEM, notPEM, "--etcd-cert and --etcd-key"},
		{notPEM, notPEM, notPEM, "--etcd-cert and --etcd-key"},
		{crt, key, filepath.Join(dir, "missing.crt"), "--etcd-ca"},
		{crt, key, notPEM, "holds no PEM certificate"},
		{crt, key, pki.CA(), ""},
	} {
		cfg, _, err := ParseFlags([]string{"--config=", "--insecure", "--etcd", "127.0.0.1:2379", "--etcd-cert", tc.cert, "--etcd-key", tc.key, "--etcd-ca", tc.ca}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(cfg, Options{})
		if tc.want == "" {
			if err != nil || d.etcdTLS == nil || len(d.etcdTLS.Certificates) != 1 {
				t.Errorf("New with good etcd TLS files: %v, want its TLS configuration", err)
			}
			continue
		}
		var usage *UsageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with --etcd-cert %s --etcd-key %s --etcd-ca %s = %v, want a *UsageError saying %q", tc.cert, tc.key, tc.ca, err, tc.want)
		}
	}
}
