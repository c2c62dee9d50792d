package backend

import (
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// init names a function process (IsFunctionProcess) after the last
// element of its argv[0], which top and ps -o comm show. The kernel names
// a process after the file it executed, and noded executes its function
// binary through a descriptor (/proc/self/fd/N, see
// noded/functions.Binary), which would name every function process "N".
//
// A process's name is its first thread's, and prctl(PR_SET_NAME) names
// the calling thread only. Package initialization is the one time Go runs
// a goroutine on the first thread for sure (runtime.main keeps the main
// goroutine there until main.main starts), so the process names itself
// here, with one system call. Later, making sure of the thread would take
// runtime.LockOSThread, which starts the runtime's template thread: one
// more thread in every function process, about 4% of its start
// (doc/performance.md); and a write of /proc/self/comm costs three system
// calls and a walk of /proc.
func init() {
	if IsFunctionProcess() {
		nameThread(os.Args[0])
	}
}

// nameThread names the calling thread after the last element of arg0,
// cut to the 15 bytes the kernel keeps of a name.
func nameThread(arg0 string) {
	if arg0 == "" {
		return
	}
	name := filepath.Base(arg0)
	name = name[:min(len(name), 15)]
	var buf [16]byte // NUL-terminated
	copy(buf[:], name)
	// Best effort: a process keeps the kernel's name if this fails.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&buf[0])), 0)
}
