package backend

import (
	"path/filepath"
	"syscall"
)

// nameProcess sets the process's name, which top and ps -o comm show, to
// the last element of arg0, its argv[0]. The kernel names a process
// after the file it executed, and noded executes its function binary
// through a descriptor (/proc/self/fd/N, see noded/functions.Binary),
// which would name every function process "N".
//
// It writes /proc/self/comm, the name of the process's first thread,
// which is the process's name to ps and top. prctl(PR_SET_NAME) would
// name only the calling thread, and after init Go runs the main
// goroutine on any thread (TestNameProcessFromAnyThread).
func nameProcess(arg0 string) {
	if arg0 == "" {
		return
	}
	name := filepath.Base(arg0)
	name = name[:min(len(name), 15)] // the kernel keeps 15 bytes of a name
	// Best effort: a process keeps the kernel's name if this fails.
	fd, err := syscall.Open("/proc/self/comm", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	syscall.Write(fd, []byte(name))
	syscall.Close(fd)
}
