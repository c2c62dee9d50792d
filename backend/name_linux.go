package backend

import (
	"path/filepath"
	"runtime"
	"syscall"
	"unsafe"
)

// nameProcess sets the process's name, which top and ps -o comm show, to
// the last element of arg0, its argv[0]. The kernel names a process
// after the file it executed, and noded executes its function binary
// through a descriptor (/proc/self/fd/N, see noded/functions.Binary),
// which would name every function process "N".
//
// The process's name is the name of its first thread. prctl(PR_SET_NAME)
// names the calling thread only, and after init Go runs the main
// goroutine on any thread (TestNameProcessFromAnyThread); so on the
// first thread it is one prctl, and on any other a write to
// /proc/self/comm, which names the first thread and costs three system
// calls and a walk of /proc.
func nameProcess(arg0 string) {
	if arg0 == "" {
		return
	}
	name := filepath.Base(arg0)
	name = name[:min(len(name), 15)] // the kernel keeps 15 bytes of a name
	// Locked, the goroutine cannot move between the check and the prctl.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Best effort: a process keeps the kernel's name if this fails.
	if syscall.Gettid() == syscall.Getpid() {
		var buf [16]byte // NUL-terminated
		copy(buf[:], name)
		syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&buf[0])), 0)
		return
	}
	fd, err := syscall.Open("/proc/self/comm", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	syscall.Write(fd, []byte(name))
	syscall.Close(fd)
}
