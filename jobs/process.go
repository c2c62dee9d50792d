package jobs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// process is one running function process and the parent's ends of its
// stdio pipes.
type process struct {
	cmd     *exec.Cmd
	pid     int
	proto   childProtocol
	stdin   *os.File // write end; closed once the request is written
	stdout  *os.File // read end
	out     *bufio.Reader
	stderr  *os.File // read end
	greeted bool     // the hello was read (a warm process)
	cg      *cgroup  // nil when the call is contained by its process group only
}

// spawn starts the process for spec in a process group of its own with a
// parent-death signal, so that cancel, abort and shutdown can kill the
// whole group, and a crashed daemon takes its function processes with it.
// With a cgroup, the process starts inside it.
func spawn(spec Spec, cg *cgroup, tag string) (*process, error) {
	var files [6]*os.File // inR, inW, outR, outW, errR, errW
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := 0; i < 3; i++ {
		r, w, err := stdioPipe(i == 0)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("creating stdio pipes: %w", err)
		}
		files[2*i], files[2*i+1] = r, w
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	if spec.Arg0 != "" {
		cmd.Args[0] = spec.Arg0
	}
	cmd.Env = append(environ(), spec.Env...)
	if tag != "" {
		cmd.Env = append(cmd.Env, DaemonEnv+"="+tag)
	}
	// cmd.Dir is left empty: a function runs in noded's working
	// directory, which the operator chooses (the unit's
	// WorkingDirectory=, the state directory /var/lib/noded), so that
	// a function's relative paths land where the guide says.
	// Plain *os.File stdio means os/exec starts no copying goroutines and
	// Wait returns as soon as the process exits, even if a grandchild
	// still holds a pipe open.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[3], files[5]
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Pdeathsig fires when the forking *thread* exits, not the
		// process. Forking from a locked thread that is then unlocked
		// (never exited) keeps the thread alive as long as noded.
		Pdeathsig: syscall.SIGKILL,
	}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = cg.fd
	}
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	// The child has its own copies of its ends now.
	files[0].Close()
	files[3].Close()
	files[5].Close()
	if err != nil {
		files[1].Close()
		files[2].Close()
		files[4].Close()
		return nil, fmt.Errorf("starting %s: %w", spec.Path, err)
	}
	return &process{
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		proto:  protocolOf(spec.Protocol),
		stdin:  files[1],
		stdout: files[2],
		out:    bufio.NewReaderSize(files[2], maxHelloLine),
		stderr: files[4],
		cg:     cg,
	}, nil
}

// stdioPipe makes one stdio pipe of a function process: the child's end
// blocking and outside the runtime's poller, the parent's end (the write
// end for stdin, else the read end) non-blocking in it, so that reads and
// writes take deadlines. os.Pipe would put both ends in the poller and
// os/exec would then take the child's back out (Fd makes a file
// blocking): a dozen system calls per spawn for nothing.
func stdioPipe(parentWrites bool) (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	parent := p[0]
	if parentWrites {
		parent = p[1]
	}
	if err := unix.SetNonblock(parent, true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	// os.NewFile puts a non-blocking descriptor in the poller, and
	// leaves a blocking one out of it.
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// wait waits for the process to exit and reaps it. It parks on a pidfd in
// the runtime's poller, where exec.Cmd.Wait would hold an OS thread in
// waitid for the whole life of the call: with thousands of calls running
// those threads would eat noded's memory and the node's pid_max.
func (p *process) wait() error {
	if fd, err := unix.PidfdOpen(p.pid, unix.PIDFD_NONBLOCK); err == nil {
		// The PID cannot be reused before this process reaps it, so the
		// pidfd is the child's. Readable means exited.
		f := os.NewFile(uintptr(fd), "pidfd")
		if rc, err := f.SyscallConn(); err == nil {
			rc.Read(func(uintptr) bool { return p.exited() })
		}
		f.Close()
	}
	return p.cmd.Wait()
}

// kill SIGKILLs everything of the call: its process group and, when it has
// one, its cgroup, which also holds descendants that left the group.
func (p *process) kill() {
	p.signalGroup(syscall.SIGKILL)
	if p.cg != nil {
		p.cg.kill()
	}
}

// killLeftovers SIGKILLs what the exited process left behind. Most
// functions leave nothing: then the empty group answers ESRCH, the cgroup
// reads empty, and cgroup.kill is never written.
func (p *process) killLeftovers() {
	p.signalGroup(syscall.SIGKILL)
	if p.cg != nil && p.cg.populated() {
		p.cg.kill()
	}
}

// release gives back or removes the call's cgroup once the process is
// reaped.
func (p *process) release() error {
	if p.cg == nil {
		return nil
	}
	return p.cg.release()
}

// environ is noded's environment less a daemon mark it may have inherited
// itself: its function processes carry its own.
func environ() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, DaemonEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// signalGroup sends sig to the process's whole group. A group that is
// already gone is not an error: stopping is idempotent.
func (p *process) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("signalling process group %d with %s: %w", p.pid, unix.SignalName(sig), err)
}
