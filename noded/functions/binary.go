package functions

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// BinarySuffix names the function binary noded looks for beside its own
// executable: noded-fn beside noded, mynoded-fn beside a custom mynoded.
const BinarySuffix = "-fn"

// Binary is the program that runs a daemon's Go functions, held open for
// the daemon's life. A lean one (noded-fn) links only the function side,
// so each call's process starts in a fraction of the time noded's own
// binary takes; without one, noded runs Go functions in its own binary.
type Binary struct {
	// Path is the file that was opened; empty means noded's own binary.
	Path string
	// file pins what was checked: calls exec it through /proc/self/fd,
	// so a binary replaced or deleted on disk (an upgrade in place) keeps
	// serving this daemon's calls with the code that matches it, as
	// /proc/self/exe does for noded's own binary.
	file *os.File
}

// OpenBinary finds and opens the function binary: given, when not empty;
// else the file of noded's executable's name with BinarySuffix beside it,
// if there is one; else none (noded's own binary). A function binary runs
// with noded's privileges, so it must pass the trust checks of a
// functions-directory executable; one that is given or present and fails
// them is an error, not a silent fall-back. So is one that does not
// greet with noded's protocol when started once as a call would start it
// (greet): a function binary of another build left by a half-done
// upgrade is found at start, not by every call after it.
func OpenBinary(given string) (*Binary, error) {
	path := given
	if path == "" {
		self, err := os.Executable()
		if err != nil {
			return &Binary{}, nil
		}
		path = self + BinarySuffix
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return &Binary{}, nil
		}
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// Without blocking: the open of a FIFO would wait for a writer, and
	// noded with it, deaf to SIGTERM. checkBinary then refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("function binary: %w", err)
	}
	if err := checkBinary(path, f); err != nil {
		f.Close()
		return nil, err
	}
	b := &Binary{Path: path, file: f}
	if err := b.greet(greetTimeout); err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

// greetTimeout bounds the start and hello of the function binary when it
// is opened: a start takes milliseconds, a loaded machine many more.
const greetTimeout = 10 * time.Second

// greet starts the function binary as a Go function process, reads its
// hello, then closes its stdin, which ends it without a call. The hello
// must be the protocol's, of noded's version.
func (b *Binary) greet(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	spec := GoProcess(b.Exec(), b.Path, DefaultProcs)
	cmd := exec.CommandContext(ctx, spec.Path, spec.Args...)
	cmd.Args[0] = spec.Arg0
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("function binary %s: %w", b.Path, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("function binary %s: %w", b.Path, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("function binary %s: %w", b.Path, err)
	}
	line, rerr := bufio.NewReader(stdout).ReadSlice('\n')
	stdin.Close()
	werr := cmd.Wait()
	switch {
	case rerr != nil && ctx.Err() != nil:
		return fmt.Errorf("function binary %s did not greet within %v: it is not a function binary (build one with go build ./noded/cmd/noded-fn)", b.Path, timeout)
	case rerr != nil:
		status := "exit status 0"
		if werr != nil {
			status = werr.Error()
		}
		return fmt.Errorf("function binary %s exited before its protocol hello (%s; stderr %q): it is not a function binary (build one with go build ./noded/cmd/noded-fn)",
			b.Path, status, clipBytes(stderr.Bytes(), 200))
	}
	if _, err := rpc.DecodeHello(line); err != nil {
		return fmt.Errorf("function binary %s: %w; install the function binary built with this noded (%s)", b.Path, err, rpc.Version)
	}
	return nil
}

// clipBytes returns at most n bytes of b, for a message.
func clipBytes(b []byte, n int) []byte {
	return b[:min(len(b), n)]
}

// checkBinary refuses a function binary that is not an executable ELF
// file only root or noded's user can change, in a directory only they
// can change. What is checked is the file f holds, the end of any
// symlinks in path, and the directory it is in there.
func checkBinary(path string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("function binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("function binary %s is not an executable regular file (mode %v)", path, fi.Mode())
	}
	// The kernel hands a script's interpreter the path it executed,
	// /proc/self/fd/N, whose descriptor is closed by then: a script
	// would fail every call.
	head := make([]byte, len(elf.ELFMAG))
	if n, _ := f.ReadAt(head, 0); string(head[:n]) != elf.ELFMAG {
		return fmt.Errorf("function binary %s is not an ELF executable (it begins %q): noded runs it through its open descriptor, "+
			"which a script's interpreter cannot open; give the built function binary (go build ./noded/cmd/noded-fn)", path, head[:n])
	}
	if real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil && real != path {
		path = real // a symlink: check its target and the target's directory
	}
	if err := trusted(path, fi); err != nil {
		return fmt.Errorf("function binary: %w", err)
	}
	dir := filepath.Dir(path)
	dfi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("function binary: %w", err)
	}
	if err := trusted(dir, dfi); err != nil {
		return fmt.Errorf("function binary: %w", err)
	}
	return nil
}

// Exec is the path to start Go function processes with, for GoProcess
// and Resolver.Self: "" (noded's own binary) when there is no function
// binary.
func (b *Binary) Exec() string {
	if b.file == nil {
		return ""
	}
	// The descriptor is close-on-exec: the child still has it when its
	// execve opens this path, and loses it after.
	return "/proc/self/fd/" + strconv.Itoa(int(b.file.Fd()))
}

// Close releases the binary; calls started after it fail.
func (b *Binary) Close() error {
	if b.file == nil {
		return nil
	}
	return b.file.Close()
}
