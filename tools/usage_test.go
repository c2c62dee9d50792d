package tools

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Usage errors say what is wrong with what was given and what to write
// instead, at once and with exit status 2, without contacting a node.
func TestUsageErrorsSayHowToFix(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"global flag after the command", []string{"call", "--insecure", "127.0.0.1:1811", "echo"},
			// The fast flags of run come first.
			"--insecure is a global flag: give it before the command, as in\n  noderpc --insecure --socket-timeout 1s --unreachable-after 2s --insecure call 127.0.0.1:1811 echo\n"},
		{"global flag with a value after the command", []string{"ping", "--socket-timeout", "3s", "127.0.0.1:1811"},
			"--unreachable-after 2s --socket-timeout 3s ping 127.0.0.1:1811\n"},
		{"command flag before the command", []string{"--timeout", "5s", "call", "127.0.0.1:1811", "echo"},
			"--timeout is a flag of call, start, wait, not a global flag: give it after the command"},
		{"node without a port", []string{"call", "127.0.0.1", "echo"}, `NODE "127.0.0.1" has no port; give host:port, as in 127.0.0.1:1811`},
		{"host name without a port", []string{"call", "node1", "echo", "{}"}, `NODE "node1" has no port; give host:port, as in node1:1811`},
		{"node given as a URL", []string{"call", "http://127.0.0.1:1811", "echo"}, `NODE "http://127.0.0.1:1811" is a URL; give host:port alone, as in 127.0.0.1:1811`},
		{"port out of range", []string{"call", "127.0.0.1:99999", "echo"}, `NODE "127.0.0.1:99999" has port "99999"; a port is a number from 1 to 65535`},
		{"port out of range, ping", []string{"ping", "127.0.0.1:99999"}, `has port "99999"`},
		{"port out of range, wait", []string{"wait", "127.0.0.1:0", "1:2:1700000000.000001:0123456789abcdef"}, `has port "0"`},
		{"second node without a port", []string{"call", "127.0.0.1:1811", "10.0.0.2", "echo"}, `NODE "10.0.0.2" has no port`},
		{"function name alone", []string{"call", "echo"}, `no NODE (host:port) given before the function name "echo", as in noderpc call 127.0.0.1:1811 echo`},
		{"flag after the nodes", []string{"call", "127.0.0.1:1811", "--timeout", "5s", "echo"}, "--timeout is a flag of call: give it before the arguments"},
		{"unknown flag after the nodes", []string{"call", "127.0.0.1:1811", "--nope", "echo"}, "flag --nope after the nodes: flags come before them"},
		{"global flag after the nodes", []string{"ping", "127.0.0.1:1811", "--json"},
			"--json is a global flag: give it before the command, as in\n  noderpc --insecure --socket-timeout 1s --unreachable-after 2s --json ping 127.0.0.1:1811\n"},
		{"global flag with a value after the arguments", []string{"call", "--concurrency", "2", "127.0.0.1:1811", "echo", "{}", "--socket-timeout", "3s"},
			"--socket-timeout is a global flag: give it before the command, as in\n  noderpc --insecure --socket-timeout 1s --unreachable-after 2s --socket-timeout 3s call --concurrency 2 127.0.0.1:1811 echo '{}'\n"},
		{"command flag after the arguments", []string{"call", "127.0.0.1:1811", "echo", "--timeout", "5s"},
			"--timeout is a flag of call: give it before the arguments, as in\n  noderpc --insecure --socket-timeout 1s --unreachable-after 2s call --timeout 5s 127.0.0.1:1811 echo\n"},
		{"global flag after the ID", []string{"wait", "127.0.0.1:1811", "1:2:1700000000.000001:0123456789abcdef", "--json=true"}, "--json=true is a global flag: give it before the command"},
		{"duration without a unit", []string{"call", "--timeout", "5", "127.0.0.1:1811", "echo"}, `--timeout "5": a duration needs a unit: write 5s`},
		{"global duration without a unit", []string{"--unreachable-after", "30", "ping", "127.0.0.1:1811"}, `--unreachable-after "30": a duration needs a unit: write 30s`},
		{"not a duration", []string{"wait", "--timeout", "soon", "127.0.0.1:1811", "x"}, `--timeout "soon": want a duration with a unit, as in 300ms, 5s or 2m`},
		{"not a number", []string{"call", "--concurrency", "many", "127.0.0.1:1811", "echo"}, `--concurrency "many": want a whole number`},
		{"not a boolean", []string{"--json=maybe", "ping", "127.0.0.1:1811"}, `--json "maybe": want true or false`},
		{"unknown command flag", []string{"call", "--nope", "127.0.0.1:1811", "echo"}, "unknown flag --nope"},
		{"certs number", []string{"certs", "issue", "--dir", "d", "--days", "x", "--node", "n"}, `--days "x": want a whole number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tc.args...)
			if code != ExitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("noderpc %q = exit %d, stdout %q, stderr:\n%s\nwant exit %d and stderr saying %q", tc.args, code, stdout, stderr, ExitUsage, tc.want)
			}
		})
	}
}

// Arguments that merely start with "-" are not flags: a negative number
// as ARGS_JSON, "-" for stdin.
func TestDashArgumentsAreNotFlags(t *testing.T) {
	for _, args := range [][]string{
		{"call", "127.0.0.1:1", "echo", "-1"},
		{"start", "127.0.0.1:1", "echo", "-"},
	} {
		if code, _, stderr := run(t, "[1]", args...); code == ExitUsage {
			t.Errorf("noderpc %q = usage error %s, want the call attempted", args, stderr)
		}
	}
}

// "noderpc help" and "noderpc help COMMAND" answer as --help does.
func TestHelpCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Usage: noderpc [global flags] COMMAND [flags] ARGS"},
		{[]string{"help", "call"}, "Usage: noderpc [global flags] call [flags] NODE..."},
		{[]string{"help", "list"}, "Usage: noderpc [global flags] calls [flags] NODE..."},
	} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), tc.args, nil, &out, &errb); code != ExitOK || !strings.HasPrefix(out.String(), tc.want) {
			t.Errorf("noderpc %q = exit %d, stdout %q, stderr %q; want exit 0 and %q", tc.args, code, out.String(), errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"help", "nope"}, nil, &out, &errb); code != ExitUsage {
		t.Errorf("noderpc help nope = exit %d, want %d", code, ExitUsage)
	}
}

// A cut JSON literal as ARGS_JSON is a usage error before any node is
// called, as any other malformed ARGS_JSON.
func TestCutLiteralArgsAreNotJSON(t *testing.T) {
	for _, lit := range []string{"nul", "tru", "fals"} {
		args := []string{"call", "127.0.0.1:1", "echo", lit}
		if code, _, stderr := run(t, "", args...); code != ExitUsage || !strings.Contains(stderr, "ARGS_JSON is not valid JSON") {
			t.Errorf("noderpc %q = exit %d, %q; want a usage error saying ARGS_JSON is not JSON", args, code, stderr)
		}
	}
}

// A malformed ARGS_JSON is refused with the reason the node would give,
// not only a "not valid JSON".
func TestArgsJSONRefusalSaysWhy(t *testing.T) {
	for lit, why := range map[string]string{
		`{"a":1e400}`:   "the number 1e400 is beyond the range of a 64-bit float",
		`{"a":1,"a":2}`: `duplicate key "a"`,
	} {
		args := []string{"call", "127.0.0.1:1", "echo", lit}
		if code, _, stderr := run(t, "", args...); code != ExitUsage || !strings.Contains(stderr, why) {
			t.Errorf("noderpc %q = exit %d, %q; want a usage error saying %s", args, code, stderr, why)
		}
	}
}
