package noded_test

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/noded"
)

// --master is repeatable and takes commas, on the command line and in
// the configuration file (where it is one string).
func TestMasterFlagRepeats(t *testing.T) {
	cfg, _, err := noded.ParseFlags([]string{"--config", "", "--master", "https://m1:1812,https://m2:1812", "--master", " https://m3:1812 "}, io.Discard)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if want := []string{"https://m1:1812", "https://m2:1812", "https://m3:1812"}; !slices.Equal(cfg.Masters, want) {
		t.Errorf("Masters = %q, want %q", cfg.Masters, want)
	}
}

// New refuses a membership set-up no master could take or no master
// could call back, with a *UsageError that says what to pass instead.
func TestNewChecksMembership(t *testing.T) {
	p := nodetest.NewPKI(t)
	node := p.NodeTLS(t, "node1")
	tlsArgs := []string{"--cert", node.Cert, "--key", node.Key, "--client-ca", node.ClientCA}
	insecure := []string{"--insecure", "--listen", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		want string // empty: valid
	}{
		{"insecure master", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812"), ""},
		{"no master, any listen", append(slices.Clone(tlsArgs), "--listen", "0.0.0.0:0"), ""},
		{"https under insecure", append(slices.Clone(insecure), "--master", "https://127.0.0.1:1812"), "speaks plain HTTP only"},
		{"http off loopback", append(slices.Clone(insecure), "--master", "http://10.1.2.3:1812"), "loopback addresses only"},
		{"no port", append(slices.Clone(insecure), "--master", "http://127.0.0.1"), "port given"},
		{"bad advertise", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812", "--advertise", "https://127.0.0.1:1811"), "--advertise"},
		{"negative session timeout", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812", "--session-timeout", "-1s"), "--session-timeout"},
		{"empty node name", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812", "--node-name", ""), "--node-name is required"},
		{"node name with a space", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812", "--node-name", "node 1"), "--node-name"},
		{"node name longer than masterd takes", append(slices.Clone(insecure), "--master", "http://127.0.0.1:1812", "--node-name", strings.Repeat("n", 256)), "--node-name"},
		{"tls master", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "https://m1.example:1812"), ""},
		{"http under tls", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "http://m1.example:1812"), "want https://HOST:PORT"},
		{"unspecified listen", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "https://m1.example:1812", "--listen", "0.0.0.0:1811"), "pass --advertise"},
		{"unspecified v6 listen", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "https://m1.example:1812", "--listen", "[::]:1811"), "pass --advertise"},
		{"empty listen host", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "https://m1.example:1812", "--listen", ":1811"), "pass --advertise"},
		{"unspecified listen, advertised", append(slices.Clone(tlsArgs), "--node-name", "node1", "--master", "https://m1.example:1812", "--listen", "0.0.0.0:1811", "--advertise", "https://node1.example:1811"), ""},
		{"certificate of another node", append(slices.Clone(tlsArgs), "--node-name", "node2", "--master", "https://m1.example:1812"), `names "node1", and --node-name is "node2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNew(t, tc.args, tc.want)
		})
	}
}
