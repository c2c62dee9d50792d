// Command peakrss runs a command and writes the peak resident memory of
// that command alone, its rusage's Maxrss in KiB, to a file:
//
//	peakrss FILE COMMAND [ARG...]
//
// It exits with the command's status. Linux starts the child of a Go
// process with vfork and counts the parent's resident memory at exec into
// the child's Maxrss, so a child of the test process, which holds far
// more than noderpc does, would seem to peak at the test's size. As the
// child of this small process, the command's figure is its own.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: peakrss FILE COMMAND [ARG...]")
		os.Exit(125)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(125)
	}
	maxrss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	if err := os.WriteFile(os.Args[1], fmt.Appendf(nil, "%d\n", maxrss), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(125)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
