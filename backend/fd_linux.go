package backend

import "syscall"

// dupCloexec duplicates fd with close-on-exec set, so the processes a
// function starts do not inherit the protocol pipe.
func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// dupTo makes newfd a copy of oldfd.
func dupTo(oldfd, newfd int) error {
	return syscall.Dup3(oldfd, newfd, 0)
}
