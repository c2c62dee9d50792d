package jobs

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Containment says how a call's processes are kept together so that all
// of them can be killed.
type Containment string

// Containment modes.
const (
	// ContainAuto uses cgroups where this process may create them and
	// process groups otherwise.
	ContainAuto Containment = "auto"
	// ContainCgroup puts every call in a cgroup v2 of its own: a
	// descendant that leaves the process group (setsid, a daemonising
	// double fork) is still killed with the call, and the cgroups of a
	// daemon that died are killed when the next one starts. It is an
	// error where cgroups cannot be created.
	ContainCgroup Containment = "cgroup"
	// ContainProcessGroup relies on process groups alone.
	ContainProcessGroup Containment = "process-group"
)

// ErrNoCgroup is the error of a start under ContainCgroup that could not
// have a cgroup of its own: the call is not run rather than run
// uncontained.
var ErrNoCgroup = errors.New("containment is cgroup, and the call could not have a cgroup of its own")

// ParseContainment returns the containment s names, or an error saying
// which names there are. It is the one check of a containment, for
// noded's flag and for New.
func ParseContainment(s string) (Containment, error) {
	switch c := Containment(s); c {
	case ContainAuto, ContainCgroup, ContainProcessGroup:
		return c, nil
	}
	return "", fmt.Errorf("unknown containment %q (want auto, cgroup or process-group)", s)
}

// callCgroupsDir is the directory, under noded's own cgroup, that holds one
// directory per table, named after its daemon, which holds one cgroup per
// call.
const callCgroupsDir = "noderpc-calls"

// cgroups creates the cgroups of one table's calls, in
// <noded's cgroup>/noderpc-calls/<daemon tag>-<random>/<call>.
//
// A call's cgroup that is empty when the call ends is kept, up to
// maxIdleCgroups of them, and given to a later call instead of a new one:
// the kernel's mkdir and rmdir of a cgroup (its control files made and
// torn down) cost noded about 0.1 ms of CPU per call, a sixth of its own
// work on a cold call, where reading cgroup.events costs a few
// microseconds. A cgroup holds no state a call could see or leave to the
// next one but its counters, which noded does not read.
type cgroups struct {
	dir string

	mu   sync.Mutex
	idle []cgroupFiles // empty call cgroups, still open, newest last
}

// maxIdleCgroups bounds the empty cgroups kept for reuse: enough for a
// burst of concurrent cold calls, few enough that an idle noded leaves
// little behind.
const maxIdleCgroups = 32

// newCgroups prepares the directory of the calls' cgroups of a table of
// the daemon tag. It kills nothing: KillOrphans reaps the directories of
// daemons that are gone.
func newCgroups(tag string) (*cgroups, error) {
	base, err := cgroupsBase()
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating %s: %w", base, err)
	}
	dir := filepath.Join(base, tag+"-"+randomHex(4))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	return &cgroups{dir: dir}, nil
}

// cgroupsBase is the directory of every daemon's call cgroups.
func cgroupsBase() (string, error) {
	own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	return filepath.Join(own, callCgroupsDir), nil
}

// ownCgroup returns the directory of this process's cgroup in the cgroup
// v2 (unified) hierarchy.
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var rel string
	found := false
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			rel, found = p, true
		}
	}
	if !found {
		return "", errors.New("no cgroup v2 hierarchy in /proc/self/cgroup")
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		// Fields: id parent major:minor root mountpoint opts... - fstype ...
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		root, mnt := f[3], f[4]
		inside, ok := strings.CutPrefix(rel, root)
		if !ok {
			continue
		}
		return filepath.Join(mnt, inside), nil
	}
	return "", errors.New("cgroup v2 is not mounted")
}

// reapStaleCgroups kills and removes the call cgroups of daemons that no
// longer run: their function processes would otherwise outlive them, and
// a descendant that left the process group escapes the parent-death
// signal. It returns how many processes it found in them. Without cgroup
// v2, or with no calls' directory, there is nothing to reap.
func reapStaleCgroups(log *slog.Logger) int {
	base, err := cgroupsBase()
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return 0
	}
	killed := 0
	for _, e := range entries {
		tag, _, ok := strings.Cut(e.Name(), "-")
		if !ok || !e.IsDir() || alive(tag) {
			continue
		}
		pids, calls := reapDaemonCgroups(log, filepath.Join(base, e.Name()))
		killed += len(pids)
		log.Info("killed what was left of an earlier daemon's calls", "cgroup", filepath.Join(base, e.Name()), "calls", calls, "pids", pids)
	}
	return killed
}

// reapDaemonCgroups kills the processes in the call cgroups under dir, of
// a daemon that no longer runs, and removes them and dir. It returns the
// PIDs it found and how many calls' cgroups still held processes (idle
// ones, kept for reuse, are removed without counting).
func reapDaemonCgroups(log *slog.Logger, dir string) (pids []int, calls int) {
	entries, _ := os.ReadDir(dir)
	for _, c := range entries {
		if !c.IsDir() {
			continue
		}
		files, err := openCgroupFiles(filepath.Join(dir, c.Name()))
		if err != nil {
			log.Warn("opening the cgroup of an earlier daemon's call", "err", err)
			continue
		}
		g := &cgroup{cgroupFiles: files}
		if g.populated() {
			calls++
		}
		pids = append(pids, g.procs()...)
		g.kill()
		removeNested(g.path)
		if err := g.remove(); err != nil {
			log.Warn("removing the cgroup of an earlier daemon's call", "cgroup", g.path, "err", err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("removing the cgroup of an earlier daemon", "cgroup", dir, "err", err)
	}
	return pids, calls
}

// cgroupFiles is what noded holds open of one call cgroup for as long as
// the cgroup exists, through its calls and while it waits idle: its
// directory, which clone's CLONE_INTO_CGROUP takes and every other
// control file is opened relative to, and the two control files read on
// every call, cgroup.events and cgroup.stat, read with pread at offset 0,
// where kernfs generates their content afresh. Opening a control file by
// its full path walks every directory above it in kernfs: a call's cgroup
// work took 30 µs that way and takes 3.5 µs with the files held open
// (BenchmarkCgroupCall). All of them are close-on-exec: no function
// process inherits them (TestCgroupDescriptorsNotInherited).
//
// A cgroup holds at most three descriptors, so noded holds at most
// 3*maxIdleCgroups for the idle cgroups plus three per function process
// (a running call, or a warm process waiting in the pool).
type cgroupFiles struct {
	path string // for the rare mkdir, rmdir and listing of nested cgroups
	fd   int    // the directory, open until the cgroup is removed
	// events and stat are cgroup.events and cgroup.stat, -1 until first
	// read: opened on a read rather than with the directory, so that a
	// directory that is not a cgroup is refused by clone, as the kernel
	// refusing containment, not by an open of a missing file.
	events, stat int
}

// openCgroupFiles opens the directory of the cgroup at path.
func openCgroupFiles(path string) (cgroupFiles, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return cgroupFiles{}, fmt.Errorf("opening cgroup %s: %w", path, err)
	}
	return cgroupFiles{path: path, fd: fd, events: -1, stat: -1}, nil
}

// close closes what is open of the cgroup; the cgroup itself stays.
func (f *cgroupFiles) close() {
	for _, fd := range []*int{&f.fd, &f.events, &f.stat} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// says reports whether the control file name, open at *fd or opened
// there now, holds line; false when it cannot be read. It reads with bare
// system calls: os.ReadFile would register the file with the runtime's
// poller (cgroup.events can be polled) and stat it. The files it reads
// are a few short lines.
func (f *cgroupFiles) says(fd *int, name, line string) bool {
	if *fd < 0 {
		opened, err := unix.Openat(f.fd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		*fd = opened
	}
	var buf [256]byte
	n, err := unix.Pread(*fd, buf[:], 0)
	return err == nil && bytes.Contains(buf[:n], []byte(line))
}

// removed reports whether the cgroup was removed behind noded's back
// while noded held it: its open cgroup.events then reads ENODEV.
func (f *cgroupFiles) removed() bool {
	if f.events < 0 {
		return false
	}
	var buf [64]byte
	_, err := unix.Pread(f.events, buf[:], 0)
	return errors.Is(err, unix.ENODEV)
}

// create makes the cgroup for one function process, open for clone's
// CLONE_INTO_CGROUP, so the process is inside from its first
// instruction: nothing it forks can escape.
//
// It reuses an idle cgroup when there is one.
func (c *cgroups) create() (*cgroup, error) {
	files, reused := c.takeIdle()
	if !reused {
		path := filepath.Join(c.dir, randomHex(8))
		if err := os.Mkdir(path, 0o755); err != nil {
			return nil, fmt.Errorf("creating cgroup: %w", err)
		}
		var err error
		if files, err = openCgroupFiles(path); err != nil {
			os.Remove(path)
			return nil, err
		}
	}
	return &cgroup{cgroupFiles: files, pool: c, reused: reused}, nil
}

// takeIdle returns an idle cgroup, if any.
func (c *cgroups) takeIdle() (cgroupFiles, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.idle)
	if n == 0 {
		return cgroupFiles{}, false
	}
	files := c.idle[n-1]
	c.idle = c.idle[:n-1]
	return files, true
}

// keep adds an empty cgroup to the idle ones; false when there are enough.
func (c *cgroups) keep(files cgroupFiles) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= maxIdleCgroups {
		return false
	}
	c.idle = append(c.idle, files)
	return true
}

// dropIdle closes and removes the idle cgroups.
func (c *cgroups) dropIdle() error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	var errs []error
	for _, files := range idle {
		files.close()
		if err := os.Remove(files.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close closes and removes the idle cgroups and then the table's
// directory, once every call cgroup is gone.
func (c *cgroups) close() error {
	err := c.dropIdle()
	if rerr := os.Remove(c.dir); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// cgroup is the cgroup of one function process and all it forks.
//
// Its files are used by the call's own goroutine, one step after another
// (start, leftovers, release), and by a kill that may come from another
// goroutine at any time; kill therefore touches them only under mu and
// not once the cgroup is released, after which they may be another
// call's.
type cgroup struct {
	cgroupFiles
	pool   *cgroups // where it goes back, empty, when the call ends
	reused bool     // it was taken from the idle ones

	mu sync.Mutex
	// killed says cgroup.kill was written: such a cgroup is never
	// reused, because the kernel (6.18 here) then SIGKILLs the next
	// process cloned into it (TestLateKillSparesReusedCgroup fails so).
	killed bool
	// released says the cgroup went back to the idle ones or was
	// removed: a late kill (a call stopped after its end) must not
	// touch what may now be another call's cgroup.
	released bool
}

// kill SIGKILLs every process in the cgroup, wherever it moved in the
// process tree.
func (g *cgroup) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	g.killed = true
	fd, err := unix.Openat(g.fd, "cgroup.kill", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = unix.Write(fd, []byte("1"))
		unix.Close(fd)
	}
	if err == nil {
		return
	}
	// Kernels before 5.14 have no cgroup.kill: kill what is listed.
	for _, pid := range g.procs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// procs returns the PIDs in the cgroup, none if it cannot be read.
func (g *cgroup) procs() []int {
	fd, err := unix.Openat(g.fd, "cgroup.procs", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	// A blocking descriptor: os.NewFile leaves it out of the poller.
	f := os.NewFile(uintptr(fd), filepath.Join(g.path, "cgroup.procs"))
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	var pids []int
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// populated reports whether a process is still in the cgroup (or its
// cgroup.events cannot be read, which must be treated alike).
func (g *cgroup) populated() bool {
	return !g.says(&g.events, "cgroup.events", "populated 0\n")
}

// nested reports whether the cgroup holds cgroups of its own (a function
// may make some in its own cgroup), or its cgroup.stat cannot be read:
// such a cgroup is not given to another call.
func (g *cgroup) nested() bool {
	return !g.says(&g.stat, "cgroup.stat", "nr_descendants 0\n")
}

// release gives the cgroup back for reuse, its files open, if it is
// empty, was never killed and fewer than maxIdleCgroups are idle, and
// otherwise removes it (see remove). Called once, after the process is
// reaped and its leftovers killed.
func (g *cgroup) release() error {
	g.mu.Lock()
	g.released = true
	killed := g.killed
	g.mu.Unlock()
	if !killed && !g.populated() && !g.nested() && g.pool.keep(g.cgroupFiles) {
		return nil
	}
	removeNested(g.path)
	return g.remove()
}

// removeNested removes the cgroups nested in the cgroup at path, deepest
// first, so that it can be removed itself; their processes must be dead
// or dying (a kill of the outer cgroup kills them too). noded holds
// nothing open of them.
func removeNested(path string) {
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if e.IsDir() {
			sub := filepath.Join(path, e.Name())
			removeNested(sub)
			removeCgroupDir(sub)
		}
	}
}

// remove closes the cgroup's files and removes it (see removeCgroupDir).
// No clone may be using it any more: it is called after the process
// started in it is reaped, or instead of starting one.
func (g *cgroup) remove() error {
	g.close()
	return removeCgroupDir(g.path)
}

// removeCgroupDir waits until the cgroup at path is empty and removes it.
// Killed processes leave asynchronously, so an rmdir right after the kill
// can fail with EBUSY for a moment.
func removeCgroupDir(path string) error {
	var err error
	delay := 500 * time.Microsecond
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = os.Remove(path)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
