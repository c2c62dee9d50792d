package functions

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/rpc"
)

// List returns every function of the node for GET /ListFunctions: the
// Go functions, then every file of Dir, each executable one checked as
// Resolve checks it and, past that, for what would make its exec fail
// (no "#!" line, a "#!" line ending in CRLF, a missing interpreter). A
// file that no start could run is listed as not runnable, with why,
// because that is what an operator who just installed it needs to see.
// It reads the directory and the first bytes of each file, so it is for
// listings, not for every call. Names starting with "." are left out:
// they are never function names, and editors and package managers leave
// such files behind.
func (f *Resolver) List() []rpc.Function {
	var list []rpc.Function
	if f.Registry != nil {
		for _, name := range f.Registry.Names() {
			kind := rpc.FunctionGo
			if f.Registry.Builtin(name) {
				kind = rpc.FunctionBuiltin
			}
			list = append(list, rpc.Function{Name: name, Kind: kind, Runnable: true})
		}
	}
	if f.Dir != "" {
		entries, _ := os.ReadDir(f.Dir) // a missing directory has no functions
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				list = append(list, f.file(e.Name()))
			}
		}
	}
	// Stable: a Go function stays before the file it shadows.
	slices.SortStableFunc(list, func(a, b rpc.Function) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// file is the listing of the file name in the functions directory.
func (f *Resolver) file(name string) rpc.Function {
	fn := rpc.Function{Name: name, Kind: rpc.FunctionExecutable}
	var err error
	var bad *rpc.Error
	if errors.As(backend.CheckName(name), &bad) {
		err = fmt.Errorf("%s, so no start can name it; rename the file", bad.Message)
	} else if _, ok := f.goFunction(name); ok {
		err = errors.New("a Go function of the same name runs instead; rename the file")
	} else {
		var path string
		if path, err = executable(f.Dir, name); err == nil {
			err = execFormat(path)
		}
	}
	if err != nil {
		fn.Problem = err.Error()
	}
	fn.Runnable = err == nil
	return fn
}

func (f *Resolver) goFunction(name string) (backend.Func, bool) {
	if f.Registry == nil {
		return nil, false
	}
	return f.Registry.Lookup(name)
}

// execFormat says why the kernel would refuse to execute the file at
// path, from its first bytes: it is neither an ELF binary nor a script
// whose "#!" line names an interpreter that exists. A file it cannot
// read, or that is no longer a regular file (executable, which checks
// the type, says why at the start), is given the benefit of the doubt.
func execFormat(path string) error {
	head := jobs.ReadHead(path)
	if head == nil {
		return nil
	}
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		return nil
	case !bytes.HasPrefix(head, []byte("#!")):
		return fmt.Errorf("%s has no #! line and is not an ELF binary, so exec refuses it (exec format error); start it with a line such as #!/bin/sh", path)
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	if bytes.HasSuffix(line, []byte("\r")) {
		return fmt.Errorf("%s has a #! line ending in CRLF, so exec looks for an interpreter whose name ends in a carriage return; convert the file to LF line ends (dos2unix)", path)
	}
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return fmt.Errorf("%s has a #! line that names no interpreter", path)
	}
	fi, err := os.Stat(fields[0])
	switch {
	case err != nil:
		return fmt.Errorf("%s names the interpreter %s in its #! line, which cannot be used: %v", path, fields[0], err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s names the interpreter %s in its #! line, which is not an executable file", path, fields[0])
	}
	return nil
}
