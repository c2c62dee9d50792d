package tools

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// TestFunctionsCommand: noderpc functions lists what each node offers,
// a file that cannot run with why, and exits 0 while the nodes answer.
func TestFunctionsCommand(t *testing.T) {
	n := startNode(t)
	broken := filepath.Join(n.FunctionsDir(), "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run(t, "", "functions", n.Addr())
	for _, row := range []string{
		`(?m)^NODE +FUNCTION +KIND +RUNNABLE +PROBLEM$`,
		`(?m)^` + regexp.QuoteMeta(n.Addr()) + ` +echo +builtin +yes +-$`,
		`(?m)^` + regexp.QuoteMeta(n.Addr()) + ` +fail +executable +yes +-$`,
		`(?m)^` + regexp.QuoteMeta(n.Addr()) + ` +broken +executable +no +` + regexp.QuoteMeta(broken) + ` is not executable`,
	} {
		if !regexp.MustCompile(row).MatchString(stdout) {
			t.Errorf("functions = exit %d, stdout\n%s\nstderr %q; want a line matching %s", code, stdout, stderr, row)
		}
	}
	if code != ExitOK {
		t.Errorf("functions = exit %d, want 0: the node answered", code)
	}

	// Two nodes, one dead: one JSON line each, exit 3.
	dead := deadAddr(t)
	code, stdout, _ = run(t, "", "--json", "functions", n.Addr(), dead)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var first struct {
		Node      string         `json:"node"`
		OK        bool           `json:"ok"`
		Functions []rpc.Function `json:"functions"`
	}
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || !first.OK || first.Node != n.Addr() ||
		!strings.Contains(lines[1], `"ok":false`) || code != ExitUnreachable {
		t.Fatalf("--json functions on a live and a dead node = exit %d, %q; want two lines, the second not ok, exit 3", code, stdout)
	}
	found := false
	for _, f := range first.Functions {
		found = found || f.Name == "broken" && !f.Runnable && strings.Contains(f.Problem, "not executable")
	}
	if !found {
		t.Errorf("--json functions = %+v, want broken listed as not runnable", first.Functions)
	}
}

// TestFunctionsOfOldNode: a node of protocol 1 answers GET
// /ListFunctions with its calls; noderpc functions says so instead of
// printing an empty list.
func TestFunctionsOfOldNode(t *testing.T) {
	old := nodetest.StartFake(t, nodetest.AnswerJSON(200, `{"calls":[]}`))
	code, stdout, stderr := run(t, "", "functions", old.Addr)
	if code != ExitUnreachable || stdout != "" || !strings.Contains(stderr, "protocol 1") {
		t.Errorf("functions on a node of protocol 1 = exit %d, stdout %q, stderr %q; want exit 3 and a message naming protocol 1", code, stdout, stderr)
	}
}
