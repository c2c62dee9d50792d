package functions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/rpc"
)

// functionsDir builds a functions directory holding every kind of entry
// Resolve must tell apart, and returns it with a directory outside it.
func functionsDir(t *testing.T) (dir, outside string) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "functions")
	outside = filepath.Join(root, "outside")
	for _, d := range []string{dir, outside, filepath.Join(dir, "subdir"), filepath.Join(dir, "lib")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(dir, "hello"), 0o755},
		{filepath.Join(dir, "owner-only"), 0o700},
		{filepath.Join(dir, "notes.txt"), 0o644},
		{filepath.Join(dir, ".hidden"), 0o755},
		{filepath.Join(dir, "lib", "real"), 0o755},
		{filepath.Join(dir, "echo"), 0o755}, // shadowed by the Go builtin
		{filepath.Join(outside, "evil"), 0o755},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte("#!/bin/sh\necho null\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // umask
			t.Fatal(err)
		}
	}
	links := []struct{ target, name string }{
		{filepath.Join(outside, "evil"), "escape-abs"},
		{"../outside/evil", "escape-rel"},
		{"lib/real", "inside-link"},
		{"missing", "dangling"},
		{"subdir", "dir-link"},
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, outside
}

func TestResolve(t *testing.T) {
	dir, _ := functionsDir(t)
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	f := &Resolver{Registry: reg, Self: "/usr/sbin/noded", Dir: dir}
	tests := []struct {
		name     string
		want     jobs.Spec // when it resolves
		wantKind rpc.Kind  // when it does not
		wantMsg  string
	}{
		{name: "echo", want: jobs.Spec{Name: "echo", Path: "/usr/sbin/noded", Args: []string{"function", "echo"}, Env: []string{cookie}, Protocol: jobs.ProtocolFramed}},
		{name: "hello", want: jobs.Spec{Name: "hello", Path: filepath.Join(dir, "hello")}},
		{name: "owner-only", want: jobs.Spec{Name: "owner-only", Path: filepath.Join(dir, "owner-only")}},
		{name: "inside-link", want: jobs.Spec{Name: "inside-link", Path: filepath.Join(dir, "lib", "real")}},
		{name: "notes.txt", wantKind: rpc.KindUnknownFunction, wantMsg: "not executable"},
		{name: "subdir", wantKind: rpc.KindUnknownFunction, wantMsg: "is a directory, not a regular file"},
		{name: "dir-link", wantKind: rpc.KindUnknownFunction, wantMsg: "not a regular file"},
		{name: "escape-abs", wantKind: rpc.KindUnknownFunction, wantMsg: "outside the functions directory"},
		{name: "escape-rel", wantKind: rpc.KindUnknownFunction, wantMsg: "outside the functions directory"},
		{name: "dangling", wantKind: rpc.KindUnknownFunction, wantMsg: "does not resolve"},
		{name: "nope", wantKind: rpc.KindUnknownFunction, wantMsg: "no file " + filepath.Join(dir, "nope")},
		{name: ".hidden", wantKind: rpc.KindBadRequest, wantMsg: "starts with '.'"},
		{name: "../outside/evil", wantKind: rpc.KindBadRequest, wantMsg: "starts with '.'"},
		{name: "x/../../outside/evil", wantKind: rpc.KindBadRequest, wantMsg: `".."`},
		{name: "a..b", wantKind: rpc.KindBadRequest, wantMsg: `".."`},
		{name: "lib/real", wantKind: rpc.KindBadRequest, wantMsg: "character"},
		{name: "", wantKind: rpc.KindBadRequest, wantMsg: "empty"},
	}
	for _, tt := range tests {
		got, err := f.Resolve(tt.name)
		if tt.wantKind != "" {
			if rpc.KindOf(err) != tt.wantKind || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Resolve(%q) = %+v, %v; want a %s error saying %q", tt.name, got, err, tt.wantKind, tt.wantMsg)
			}
			continue
		}
		if err != nil || got.Name != tt.want.Name || got.Path != tt.want.Path || got.Protocol != tt.want.Protocol ||
			!slices.Equal(got.Args, tt.want.Args) || !slices.Equal(got.Env, tt.want.Env) {
			t.Errorf("Resolve(%q) = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestResolveWithoutDir(t *testing.T) {
	tests := []struct {
		desc    string
		dir     string
		wantMsg string
	}{
		{"no directory configured", "", "no functions directory is configured"},
		{"missing directory", filepath.Join(t.TempDir(), "missing"), "there is no file"},
	}
	for _, tt := range tests {
		f := &Resolver{Registry: backend.NewRegistry(), Dir: tt.dir}
		_, err := f.Resolve("hello")
		if rpc.KindOf(err) != rpc.KindUnknownFunction || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: Resolve(hello) error = %v, want unknown_function saying %q", tt.desc, err, tt.wantMsg)
		}
		if got := f.List(); len(got) != 0 {
			t.Errorf("%s: List() = %v, want none", tt.desc, got)
		}
	}
}

// cookie is what makes a re-executed noded a function process.
const cookie = rpc.FunctionCookieKey + "=" + rpc.FunctionCookieValue

func TestGoProcess(t *testing.T) {
	tests := []struct {
		self, name, wantPath, wantArg0 string
	}{
		{"", "", "/proc/self/exe", os.Args[0]},
		{"/usr/sbin/noded", "", "/usr/sbin/noded", ""},
		{"/proc/self/fd/5", "/usr/sbin/noded-fn", "/proc/self/fd/5", "/usr/sbin/noded-fn"},
	}
	for _, tt := range tests {
		got := GoProcess(tt.self, tt.name, 0)
		if got.Path != tt.wantPath || got.Arg0 != tt.wantArg0 || !slices.Equal(got.Args, []string{"function"}) ||
			!slices.Equal(got.Env, []string{cookie}) || got.Protocol != jobs.ProtocolFramed {
			t.Errorf("GoProcess(%q, %q, 0) = %+v; want %s as %q, function, with %s, framed", tt.self, tt.name, got, tt.wantPath, tt.wantArg0, cookie)
		}
	}
	// procs sets the process's GOMAXPROCS, after the cookie; 0 leaves it.
	for procs, want := range map[int][]string{0: {cookie}, 1: {cookie, "GOMAXPROCS=1"}, 3: {cookie, "GOMAXPROCS=3"}} {
		if got := GoProcess("", "", procs); !slices.Equal(got.Env, want) {
			t.Errorf("GoProcess with procs %d has environment %q, want %q", procs, got.Env, want)
		}
	}
}

// Every Go function's process, and the warm pool's, gets the Resolver's
// GOMAXPROCS: the pool's processes match the calls' only if their
// environments are the same.
func TestResolveProcs(t *testing.T) {
	reg := backend.NewRegistry()
	reg.Register("hi", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	f := &Resolver{Registry: reg, Self: "/usr/sbin/noded-fn", Procs: 1}
	got, err := f.Resolve("hi")
	if err != nil {
		t.Fatal(err)
	}
	if want := GoProcess(f.Self, f.SelfName, f.Procs).Env; !slices.Equal(got.Env, want) || !slices.Contains(got.Env, "GOMAXPROCS=1") {
		t.Errorf("Resolve(hi) with Procs 1 has environment %q, want %q with GOMAXPROCS=1", got.Env, want)
	}
}

func TestResolveSelfDefault(t *testing.T) {
	reg := backend.NewRegistry()
	reg.Register("hi", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	f := &Resolver{Registry: reg}
	got, err := f.Resolve("hi")
	if err != nil || got.Path != "/proc/self/exe" || got.Protocol != jobs.ProtocolFramed || !slices.Equal(got.Args, []string{"function", "hi"}) {
		t.Errorf("Resolve(hi) with no Self = %+v, %v; want /proc/self/exe function hi, framed", got, err)
	}
}

func TestResolveRelativeDir(t *testing.T) {
	dir, _ := functionsDir(t)
	t.Chdir(filepath.Dir(dir))
	f := &Resolver{Dir: "functions"}
	got, err := f.Resolve("hello")
	if want := filepath.Join(dir, "hello"); err != nil || got.Path != want {
		t.Errorf("Resolve(hello) in relative dir = %+v, %v; want absolute path %s", got, err, want)
	}
}

// TestList: every file of the directory is listed, runnable exactly
// when Resolve accepts it, and Go functions with their kind.
func TestList(t *testing.T) {
	dir, _ := functionsDir(t)
	reg := backend.NewRegistry()
	backend.RegisterBuiltins(reg)
	reg.Register("mine", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	f := &Resolver{Registry: reg, Dir: dir}
	var got []string
	for _, fn := range f.List() {
		got = append(got, fmt.Sprintf("%s %s %v", fn.Name, fn.Kind, fn.Runnable))
		if _, err := f.Resolve(fn.Name); fn.Kind != rpc.FunctionExecutable && err != nil {
			t.Errorf("List has Go function %s, which Resolve refuses: %v", fn.Name, err)
		} else if _, shadowed := reg.Lookup(fn.Name); fn.Kind == rpc.FunctionExecutable && !shadowed && fn.Runnable != (err == nil) {
			t.Errorf("List has %s runnable=%v (%s), but Resolve says %v", fn.Name, fn.Runnable, fn.Problem, err)
		}
		if fn.Runnable != (fn.Problem == "") {
			t.Errorf("List has %s runnable=%v with problem %q; want a problem exactly when not runnable", fn.Name, fn.Runnable, fn.Problem)
		}
	}
	want := []string{
		"dangling executable false", "dir-link executable false",
		"echo builtin true", "echo executable false",
		"escape-abs executable false", "escape-rel executable false",
		"hello executable true", "inside-link executable true", "lib executable false",
		"mine go true", "node_info builtin true", "notes.txt executable false",
		"owner-only executable true", "sleep builtin true", "subdir executable false",
		"version builtin true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("List() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestListExecFormat: a file Resolve accepts but exec would refuse is
// listed as not runnable, with the reason.
func TestListExecFormat(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elf, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]struct {
		text    string
		problem string // "" for runnable
	}{
		"script":      {"#!/bin/sh\necho 1\n", ""},
		"script-args": {"#! /bin/sh -e\necho 1\n", ""},
		"binary":      {string(elf[:4096]), ""},
		"crlf":        {"#!/bin/sh\r\necho 1\r\n", "ending in CRLF"},
		"no-shebang":  {"echo 1\n", "has no #! line"},
		"empty":       {"", "has no #! line"},
		"bare":        {"#!\n", "names no interpreter"},
		"no-interp":   {"#!/nonexistent/sh\n", "/nonexistent/sh"},
		"interp-dir":  {"#!/tmp\n", "not an executable file"},
	}
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(f.text), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list := (&Resolver{Dir: dir}).List()
	if len(list) != len(files) {
		t.Fatalf("List() = %+v, want one entry per file (%d)", list, len(files))
	}
	for _, fn := range list {
		want := files[fn.Name].problem
		if fn.Runnable != (want == "") || !strings.Contains(fn.Problem, want) {
			t.Errorf("List() has %s runnable=%v problem %q; want runnable=%v and a problem saying %q", fn.Name, fn.Runnable, fn.Problem, want == "", want)
		}
	}
}

// TestResolveRefusesWritableByOthers: functions run as root, so a file or
// directory another user could change is refused.
func TestResolveRefusesWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"ok": 0o755, "groupw": 0o775, "worldw": 0o757} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 1\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	f := &Resolver{Dir: dir}
	if _, err := f.Resolve("ok"); err != nil {
		t.Errorf("Resolve(ok) = %v, want a function", err)
	}
	for _, name := range []string{"groupw", "worldw"} {
		if _, err := f.Resolve(name); !errors.Is(err, rpc.ErrUnknownFunction) || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("Resolve(%s) = %v, want unknown_function saying it is writable by others", name, err)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Resolve("ok"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Resolve(ok) in a world-writable directory = %v, want refused", err)
	}
}

// TestExecFormatDoesNotBlockOnAFIFO: a function file replaced by a FIFO
// after it was checked does not hold a listing that reads its first
// bytes.
func TestExecFormatDoesNotBlockOnAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- execFormat(fifo) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		// Unblock the open so the goroutine ends with the test.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("execFormat of a FIFO still blocks after 10s")
	}
}
