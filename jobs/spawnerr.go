package jobs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/noderpc/noderpc/rpc"
)

// spawnError is the request error for a function process that could not
// be started from the file at path, saying what to fix:
//
//   - out of PIDs, threads or memory for now is busy, since a retry later
//     may well succeed; so is a file being written (ETXTBSY), which a
//     retry finds replaced;
//   - a file the kernel will not run (no "#!" line, CRLF line endings, an
//     interpreter that is not there, a binary for another machine, a
//     noexec mount) is unknown_function, as is a file that is not
//     executable: the name names no function this node can run, and the
//     fix is the operator's;
//   - a call that could not have the cgroup --containment cgroup demands
//     is internal, saying so;
//   - anything else is internal.
func spawnError(fn, path string, err error) *rpc.Error {
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM):
		return rpc.Errorf(rpc.KindBusy, "function %s: this node cannot start another process now: %v", fn, err)
	case errors.Is(err, ErrNoCgroup):
		return rpc.Errorf(rpc.KindInternal, "function %s was not started: %v", fn, err)
	case errors.Is(err, syscall.ETXTBSY):
		return rpc.Errorf(rpc.KindBusy, "function %s: %s is being written (text file busy); retry once it is in place, "+
			"and install functions by writing a new file and renaming it over the old one (install(1) does)", fn, path)
	}
	if why := execProblem(path, err); why != "" {
		return rpc.Errorf(rpc.KindUnknownFunction, "function %s cannot be run: %s", fn, why)
	}
	return rpc.Errorf(rpc.KindInternal, "function %s: %v", fn, err)
}

// execProblem says why execve refused the file at path, and how to fix
// it, for the errors that are the file's: "" for the others.
func execProblem(path string, err error) string {
	head := ReadHead(path)
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		if bytes.HasPrefix(head, []byte(elf.ELFMAG)) {
			return fmt.Sprintf("%s is a binary for another kind of machine (exec format error); build it for this one", path)
		}
		return fmt.Sprintf("%s has no \"#!\" first line, so the kernel cannot tell how to run it (exec format error); "+
			"start a script with a line such as #!/bin/sh", path)
	case errors.Is(err, syscall.ENOENT):
		line, ok := bytes.CutPrefix(firstLine(head), []byte("#!"))
		switch {
		case ok && bytes.HasSuffix(line, []byte("\r")):
			return fmt.Sprintf("%s has Windows (CRLF) line endings: its \"#!\" line ends in a carriage return, so its interpreter %q does not exist; "+
				"convert the file with dos2unix or sed -i 's/\\r$//'", path, strings.TrimSpace(string(line)))
		case ok:
			return fmt.Sprintf("the interpreter its \"#!\" line names, %q, does not exist (%s); install it or fix the line", strings.TrimSpace(string(line)), path)
		case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
			return fmt.Sprintf("%s needs a program loader (ELF interpreter) this node does not have; build it statically or for this system's libc", path)
		}
		return fmt.Sprintf("%s was removed while it was being started", path)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("permission to execute %s (or its interpreter) was denied: "+
			"check that its \"#!\" interpreter is executable and its file system is not mounted noexec", path)
	}
	return ""
}

// ReadHead returns the first bytes of the file at path that the kernel
// reads to decide how to execute it (BINPRM_BUF_SIZE, 256): enough for a
// "#!" line or an ELF header. It returns nothing if the file cannot be
// read, or if it is no longer a regular file: it opens without blocking,
// so that a function file replaced by a FIFO (exec then fails EACCES)
// holds neither a start nor a listing until a writer comes.
func ReadHead(path string) []byte {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	buf := make([]byte, 256)
	n, _ := io.ReadFull(f, buf)
	return buf[:n]
}

// firstLine returns b up to its first newline.
func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return line
}
