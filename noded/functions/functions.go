// Package functions is the daemon's function lookup: registered Go
// functions first, then executables in the functions directory, and the
// trust policy for those files. It tells the job table how to start the
// process for a function name (a jobs.Spec), and holds the one definition
// of how a Go function process is started.
package functions

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/rpc"
)

// Resolver resolves function names for noded: registered Go functions
// first, run in a Go function process (GoProcess of Self), then
// executable files in Dir. Go functions win so that a stray file in the
// functions directory cannot replace a builtin.
type Resolver struct {
	// Registry holds the Go functions; nil means none.
	Registry *backend.Registry
	// Self is the program that serves Go functions; empty means the
	// running binary itself, through /proc/self/exe.
	Self string
	// SelfName is the name a Go function process is started under
	// (its argv[0]): the function binary's path, where Self may be a
	// descriptor of it under /proc. Empty means Self.
	SelfName string
	// Procs is the GOMAXPROCS of Go function processes (see GoProcess).
	Procs int
	// Dir is the functions directory; empty or missing means no
	// executable functions.
	Dir string
}

var _ jobs.Resolver = (*Resolver)(nil)

// selfExe names the running binary even after it was replaced or deleted
// on disk, so a daemon upgraded in place keeps running calls with its own
// code, the code that speaks its protocol and has its functions, until it
// is restarted.
const selfExe = "/proc/self/exe"

// GoProcess returns how to start a Go function process of the program
// self ("" is the running binary) before knowing which function it will
// run: it learns that from its request frame. The function cookie in its
// environment is what makes the program serve one call
// (backend.ServeFunction) instead of starting as itself. Every Go
// function's Spec is this one with the name added, which is what lets
// noded keep such processes started ahead of calls (the warm pool).
//
// name is its argv[0], what ps and top show (see Resolver.SelfName):
// empty means self, or, for the running binary, the daemon's own name.
//
// procs, above 0, is the process's GOMAXPROCS (see DefaultProcs); 0
// leaves it to the Go runtime, or to a GOMAXPROCS in noded's own
// environment, which function processes inherit.
func GoProcess(self, name string, procs int) jobs.Spec {
	if self == "" {
		self = selfExe
		if name == "" {
			name = os.Args[0]
		}
	}
	env := []string{rpc.FunctionCookieKey + "=" + rpc.FunctionCookieValue}
	if procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	return jobs.Spec{
		Path:     self,
		Arg0:     name,
		Args:     []string{"function"},
		Env:      env,
		Protocol: jobs.ProtocolFramed,
	}
}

// DefaultProcs is the GOMAXPROCS of a Go function process unless noded is
// told otherwise (--function-gomaxprocs). A function process serves one
// call, most of which wait on the disk, the network or other programs;
// with one P the Go runtime starts fewer threads and wakes fewer of them
// as the process starts and as it is woken for its request, which on
// a two-core machine took 10-22% off a cold call's latency
// (doc/performance.md). A function that computes in parallel raises it
// with runtime.GOMAXPROCS.
const DefaultProcs = 1

// Resolve returns how to start the process for name. It runs on every
// call, so it costs a registry lookup and, for executable functions, an
// Lstat or two: no directory scan.
//
// An invalid name is a bad_request error; a name that is neither a
// registered Go function nor a usable executable in Dir is an
// unknown_function error that says where it was looked for and, for a file
// that exists but cannot be used, why.
func (f *Resolver) Resolve(name string) (jobs.Spec, error) {
	if err := backend.CheckName(name); err != nil {
		return jobs.Spec{}, err
	}
	if f.Registry != nil {
		if _, ok := f.Registry.Lookup(name); ok {
			spec := GoProcess(f.Self, f.SelfName, f.Procs)
			spec.Name = name
			spec.Args = append(spec.Args, name)
			return spec, nil
		}
	}
	if f.Dir == "" {
		return jobs.Spec{}, rpc.Errorf(rpc.KindUnknownFunction,
			"no function %q: it is not a registered Go function, and no functions directory is configured", name)
	}
	path, err := executable(f.Dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return jobs.Spec{}, rpc.Errorf(rpc.KindUnknownFunction,
			"no function %q: it is not a registered Go function, and there is no file %s", name, filepath.Join(f.Dir, name))
	}
	if err != nil {
		return jobs.Spec{}, rpc.Errorf(rpc.KindUnknownFunction,
			"no function %q: it is not a registered Go function, and %v", name, err)
	}
	return jobs.Spec{Name: name, Path: path}, nil
}

// executable returns the path to exec for the executable function name in
// dir, or says why the file there is not one. The path is absolute, since
// noded starts functions in another working directory, and it is the
// symlink's target when the entry is a symlink, so what runs is what was
// checked.
func executable(dir, name string) (string, error) {
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return "", fmt.Errorf("%s is a symlink that does not resolve: %v", path, err) // not %w: the entry exists
		}
		realDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("cannot resolve the functions directory %s: %w", dir, err)
		}
		if realDir, err = filepath.Abs(realDir); err != nil {
			return "", err
		}
		if target, err = filepath.Abs(target); err != nil {
			return "", err
		}
		if !inside(realDir, target) {
			return "", fmt.Errorf("%s is a symlink to %s, outside the functions directory %s", path, target, realDir)
		}
		if fi, err = os.Stat(target); err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		path = target
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is %s, not a regular file", path, FileType(fi.Mode()))
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable (mode %v; chmod +x it to make it a function)", path, fi.Mode().Perm())
	}
	if err := trusted(path, fi); err != nil {
		return "", err
	}
	dfi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	if err := trusted(filepath.Dir(path), dfi); err != nil {
		return "", err
	}
	return path, nil
}

// trusted refuses a function file, or the directory holding it, that
// someone other than root or noded's own user could have written:
// functions run with noded's privileges (root on a node), so whoever can
// write one could run anything as root through a master.
func trusted(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %v); noded runs only functions no other user can change", path, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, neither root nor noded's user; noded runs only functions no other user can change", path, st.Uid)
	}
	return nil
}

// inside reports whether path is strictly below dir; both are clean and
// absolute.
func inside(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// FileType names the type of a file of mode in words, for messages:
// "a directory", "a FIFO", ...; a mode string would read "d---------".
func FileType(mode fs.FileMode) string {
	switch t := mode.Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symlink"
	case t&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}
