package backend

import (
	"path/filepath"
	"syscall"
	"unsafe"
)

// nameProcess sets the process's name, which top and ps -o comm show, to
// the last element of arg0, its argv[0]. The kernel names a process
// after the file it executed, and noded executes its function binary
// through a descriptor (/proc/self/fd/N, see noded/functions.Binary),
// which would name every function process "N".
func nameProcess(arg0 string) {
	if arg0 == "" {
		return
	}
	var comm [16]byte // TASK_COMM_LEN, the last byte the NUL
	copy(comm[:len(comm)-1], filepath.Base(arg0))
	// Best effort: a process keeps the kernel's name if this fails.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&comm[0])), 0)
}
