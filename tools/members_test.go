package tools

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noMasterAnywhere leaves --master without a default: no environment,
// and a configuration directory without a masters file.
func noMasterAnywhere(t *testing.T) (configDir string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv(EnvMaster, "")
	return filepath.Join(dir, "noderpc")
}

// deadMasterURL is an http URL of a loopback port nothing listens on.
func deadMasterURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestMasterCommandsUsageErrors(t *testing.T) {
	noMasterAnywhere(t)
	m := "--master=http://127.0.0.1:1812"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nodes without a master", []string{"nodes"}, "no masterd: give --master URL before the command"},
		{"call --all without a master", []string{"call", "--all", "echo"}, "--all takes its nodes from masterd: no masterd"},
		{"master not a URL", []string{"--master", "127.0.0.1:1812", "nodes"}, `URL "127.0.0.1:1812": want http://host:port`},
		{"https master with --insecure", []string{"--master", "https://127.0.0.1:1812", "nodes"}, "it serves TLS, and this client talks plain HTTP"},
		{"master without a port", []string{"--master", "http://m1", "nodes"}, "no port"},
		{"empty --master", []string{"--master", ",", "nodes"}, "want a masterd URL"},
		{"nodes with an argument", []string{m, "nodes", "n1"}, `nodes takes no argument, got ["n1"]`},
		{"node without a name", []string{m, "node"}, "want one node NAME, got 0 arguments"},
		{"config alone", []string{m, "config"}, "want get, set or delete"},
		{"config of another kind", []string{m, "config", "put", "a=1"}, `unknown config command "put"`},
		{"config get of two nodes", []string{m, "config", "get", "n1", "n2"}, "at most one NODE"},
		{"config set without keys", []string{m, "config", "set"}, "config set wants KEY=VALUE arguments"},
		{"config set without a value", []string{m, "config", "set", "zone"}, `"zone" is not KEY=VALUE`},
		{"config set without a key", []string{m, "config", "set", "=1"}, `"=1" has no KEY before =`},
		{"config set of a key twice", []string{m, "config", "set", "a=1", "a=2"}, `key "a" is set twice`},
		{"config set --node without a name", []string{m, "config", "set", "--node=", "a=1"}, "--node needs a node name"},
		{"config set --node after the keys", []string{m, "config", "set", "a=1", "--node", "n1"}, "flag --node after the keys: give it first"},
		{"config delete with a value", []string{m, "config", "delete", "a=1"}, `config delete takes KEY alone, got "a=1"`},
		{"config delete without keys", []string{m, "config", "delete", "--node", "n1"}, "config delete wants KEY arguments"},
		{"call --all with a node", []string{m, "call", "--all", "127.0.0.1:1811", "echo"}, "--all runs on every up node: give no NODE"},
		{"call --all without a function", []string{m, "call", "--all"}, "no function name given after --all"},
		{"--master after the command", []string{"nodes", "--master", "http://127.0.0.1:1812"},
			"--master is a global flag: give it before the command, as in\n  noderpc --insecure --socket-timeout 1s --unreachable-after 2s --master http://127.0.0.1:1812 nodes\n"},
		{"bench sessions of no session", []string{m, "bench", "sessions", "--sessions", "0"}, "want at least 1 session"},
		{"bench sessions of two masters", []string{"bench", "sessions", "--master", "http://127.0.0.1:1,http://127.0.0.1:2"}, "loads one masterd, got 2"},
		{"bench flags before sessions", []string{m, "bench", "--count", "5", "sessions"}, "--count: bench sessions takes its flags after sessions"},
		{"bench sessions with an argument", []string{m, "bench", "sessions", "x"}, `takes no arguments, got ["x"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tc.args...)
			if code != ExitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("noderpc %q = exit %d, stdout %q, stderr %q; want exit 2 and a stderr holding %q", tc.args, code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestBenchSessionsWantsInsecure(t *testing.T) {
	noMasterAnywhere(t)
	code, _, stderr := runGlobal("--cert", "x.crt", "--key", "x.key", "--ca", "ca.crt", "bench", "sessions", "--master", "http://127.0.0.1:1812")
	// The certificate flags are loaded first, and fail: what matters is
	// that nothing is run without --insecure.
	if code != ExitUsage {
		t.Errorf("noderpc bench sessions without --insecure = exit %d, %q; want 2", code, stderr)
	}
}

// --master takes its default from $NODERPC_MASTER, then from the masters
// file in the configuration directory, as --cert does; the flag wins.
func TestMasterDefaults(t *testing.T) {
	configDir := noMasterAnywhere(t)
	fromFile, fromEnv, fromFlag := deadMasterURL(t), deadMasterURL(t), deadMasterURL(t)
	if err := os.MkdirAll(configDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(configDir, "masters"), []byte("# the group's masters\n"+fromFile+"  # the first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	check := func(what, want string, args ...string) {
		t.Helper()
		code, _, stderr := run(t, "", append(args, "nodes")...)
		if code != ExitUnreachable || !strings.Contains(stderr, host(want)+": unreachable") {
			t.Errorf("noderpc nodes with %s = exit %d, %q; want 3, %s unreachable", what, code, stderr, host(want))
		}
	}
	check("the masters file", fromFile)
	t.Setenv(EnvMaster, fromEnv)
	check("$"+EnvMaster, fromEnv)
	check("--master", fromFlag, "--master", fromFlag)

	// A masters file that lists none is said so.
	t.Setenv(EnvMaster, "")
	os.WriteFile(filepath.Join(configDir, "masters"), []byte("# none yet\n"), 0o600)
	if code, _, stderr := run(t, "", "nodes"); code != ExitUsage || !strings.Contains(stderr, "lists no masterd URL") {
		t.Errorf("noderpc nodes with an empty masters file = exit %d, %q; want 2 saying it lists none", code, stderr)
	}
}

func TestConfigValueIsJSONElseString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1811", "1811"},
		{"true", "true"},
		{"null", "null"},
		{`"1"`, `"1"`},
		{`["gpu"]`, `["gpu"]`},
		{`{"a":1}`, `{"a":1}`},
		{"eu-west", `"eu-west"`},
		{"", `""`},
		{`say "hi"`, `"say \"hi\""`},
		{"{broken", `"{broken"`},
		// Cut literals, which goccy's json.Valid takes for JSON.
		{"nul", `"nul"`},
		{"tru", `"tru"`},
		{"fals", `"fals"`},
	} {
		if got := string(configValue(tc.in)); got != tc.want {
			t.Errorf("configValue(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
