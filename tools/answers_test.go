package tools

import (
	"strings"
	"testing"
)

// --max-answer bounds what noderpc reads from a node: an answer over it
// is the node answering outside the protocol, exit 3, and a bound that
// fits lets the same call through.
func TestMaxAnswerFlag(t *testing.T) {
	n := startNode(t)
	args := `"` + strings.Repeat("x", 4096) + `"`
	code, _, stderr := run(t, "", "--insecure", "--max-answer", "1024", "call", n.Addr(), "echo", args)
	if code != ExitUnreachable || !strings.Contains(stderr, "1024") {
		t.Errorf("call with --max-answer 1024 of a 4 KiB echo: exit %d, stderr %q; want 3 naming the bound", code, stderr)
	}
	if code, stdout, stderr := run(t, "", "--insecure", "--max-answer", "65536", "call", n.Addr(), "echo", args); code != ExitOK || !strings.Contains(stdout, "xxxx") {
		t.Errorf("call with --max-answer 65536 of a 4 KiB echo: exit %d, stdout %q, stderr %q; want 0 and the echo", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "", "--insecure", "--max-answer", "0", "version", n.Addr()); code != ExitUsage {
		t.Errorf("--max-answer 0: exit %d (%s), want 2", code, stderr)
	}
}

// Results reach the user as the node sent them, in plain and in --json
// output: '<', '>' and '&' are not escaped on the way.
func TestOutputKeepsResultBytes(t *testing.T) {
	n := startNode(t)
	args := `{"html":"<a href=\"x\">&amp;</a>"}`
	for _, global := range [][]string{{"--insecure"}, {"--insecure", "--json"}} {
		code, stdout, stderr := run(t, "", append(global, "call", n.Addr(), "echo", args)...)
		if code != ExitOK || !strings.Contains(stdout, args) {
			t.Errorf("noderpc %q call echo %s: exit %d, stdout %q, stderr %q; want the arguments' bytes unchanged", global, args, code, stdout, stderr)
		}
	}
}
