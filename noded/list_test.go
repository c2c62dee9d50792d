package noded_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestListFunctions: GET /ListFunctions lists the functions a node
// offers, and every file of its functions directory runnable exactly
// when a start of it runs, with why not; the calls are GET /ListCalls.
func TestListFunctions(t *testing.T) {
	t.Parallel()
	d := startNoded(t)
	files := []listedFile{
		{"good", "#!/bin/sh\necho '\"ok\"'\n", 0o755, ""},
		{"noexec", "#!/bin/sh\necho 1\n", 0o644, "not executable"},
		{"groupw", "#!/bin/sh\necho 1\n", 0o775, "writable by group or others"},
		{"crlf", "#!/bin/sh\r\necho 1\r\n", 0o755, "CRLF"},
		{"noshebang", "echo 1\n", 0o755, "no #! line"},
		{"echo", "#!/bin/sh\necho 1\n", 0o755, "Go function of the same name"},
		{"bad name", "#!/bin/sh\necho 1\n", 0o755, "outside [A-Za-z0-9_.-]"},
		{".hidden", "#!/bin/sh\necho 1\n", 0o755, "left out"},
	}
	writeFiles(t, d.FunctionsDir(), files)
	started := d.start(t, rpc.StartRequest{FnName: "echo", FnArgs: []byte(`1`), Timeout: 20})

	a, err := d.roundTrip(http.MethodGet, rpc.PathListFunctions, nil)
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("GET /ListFunctions = %v, %d %s; want 200", err, a.status, a.body)
	}
	var got rpc.ListFunctionsResponse
	if err := rpc.UnmarshalStrict(a.body, &got, rpc.RefuseUnknownFields); err != nil {
		t.Fatalf("GET /ListFunctions answered %s: %v; want the functions", a.body, err)
	}
	if got.FunctionsDir != d.FunctionsDir() || got.Calls != rpc.CallsMoved || strings.Contains(string(a.body), started.ID) {
		t.Errorf("GET /ListFunctions answered %s; want functions_dir %s, calls %q and no call", a.body, d.FunctionsDir(), rpc.CallsMoved)
	}
	listed := make(map[string][]rpc.Function)
	for _, f := range got.Functions {
		listed[f.Name] = append(listed[f.Name], f)
	}
	for _, name := range []string{"echo", "sleep", "version", "node_info"} {
		if fs := listed[name]; len(fs) == 0 || fs[0].Kind != rpc.FunctionBuiltin || !fs[0].Runnable {
			t.Errorf("GET /ListFunctions lists %s as %+v, want a runnable builtin first", name, fs)
		}
	}
	if fs := listed["exit3"]; len(fs) != 1 || fs[0].Kind != rpc.FunctionExecutable || !fs[0].Runnable {
		t.Errorf("GET /ListFunctions lists exit3 of testdata/functions as %+v, want a runnable executable", fs)
	}
	for _, f := range files {
		fs := listed[f.name]
		if f.name == ".hidden" {
			if len(fs) != 0 {
				t.Errorf("GET /ListFunctions lists %+v, want dot files left out", fs)
			}
			continue
		}
		if len(fs) == 0 {
			t.Errorf("GET /ListFunctions does not list the file %q", f.name)
			continue
		}
		fn := fs[len(fs)-1] // a file shadowed by a Go function comes after it
		if fn.Kind != rpc.FunctionExecutable || fn.Runnable != (f.problem == "") || !strings.Contains(fn.Problem, f.problem) {
			t.Errorf("GET /ListFunctions lists the file %q as %+v; want an executable, runnable=%v, problem saying %q", f.name, fn, f.problem == "", f.problem)
		}
		if f.name != "echo" { // a start of echo runs the builtin
			d.wantRuns(t, f.name, fn.Runnable)
		}
	}

	calls := d.list(t).Calls
	if len(calls) == 0 || calls[0].ID != started.ID {
		t.Errorf("GET /ListCalls = %+v, want the echo call %s first", calls, started.ID)
	}
}

// listedFile is a file an operator might install in the functions
// directory, with what the listing must say about it.
type listedFile struct {
	name, text string
	mode       os.FileMode
	problem    string // "" for runnable, "left out" for not listed
}

// writeFiles writes files into dir with exactly their modes.
func writeFiles(t *testing.T, dir string, files []listedFile) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.text), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}

// wantRuns fails the test unless a start of fn succeeds exactly when
// the listing says it is runnable.
func (d *node) wantRuns(t *testing.T, fn string, runnable bool) {
	t.Helper()
	a, err := d.roundTrip(http.MethodPut, rpc.PathStartFunction, rpc.StartRequest{FnName: fn, Timeout: 20})
	if err != nil {
		t.Fatal(err)
	}
	ran := a.status == http.StatusOK && strings.Contains(string(a.body), `"state":"succeeded"`)
	if ran != runnable {
		t.Errorf("StartFunction %q answered %d %s, but GET /ListFunctions says runnable=%v", fn, a.status, a.body, runnable)
	}
}
