package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DaemonEnv is the environment variable that marks every function process,
// and everything it starts, with the daemon that started it: its tag,
// "<pid>.<start time in clock ticks>". A daemon killed with SIGKILL cannot
// stop its calls' descendants (the parent-death signal reaches only the
// function process itself), so the next daemon looks for processes that
// carry the mark of a daemon that no longer runs and kills them. It is
// what stops a grandchild outliving its daemon under process-group
// containment; with cgroups the stale cgroups catch even a descendant that
// scrubbed its environment.
const DaemonEnv = "NODERPC_DAEMON"

// daemonTag returns this process's tag: its PID and start time, so that a
// recycled PID is not taken for the same daemon.
func daemonTag() (string, error) {
	st, err := readStat(os.Getpid())
	if err != nil {
		return "", fmt.Errorf("reading this process's start time: %w", err)
	}
	return fmt.Sprintf("%d.%d", os.Getpid(), st.start), nil
}

// procStat is what alive needs of /proc/PID/stat.
type procStat struct {
	state byte   // field 3: R, S, D, Z (zombie), X (dead), ...
	start uint64 // field 22: start time in clock ticks since boot
}

// readStat reads a process's state and start time.
func readStat(pid int) (procStat, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses; fields
	// after it are counted from its last closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// alive reports whether the daemon of tag still runs. It is the one
// answer to that question, for the processes marked with DaemonEnv and for
// the cgroups named after their daemon: a zombie has exited, and a process
// whose start time is not the tag's has only been given the dead daemon's
// PID again. A tag of a PID alone, the name of a cgroup directory made
// before start times were recorded, is judged by the PID.
func alive(tag string) bool {
	pidText, startText, withStart := strings.Cut(tag, ".")
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return false
	}
	if !withStart {
		return true
	}
	start, err := strconv.ParseUint(startText, 10, 64)
	return err == nil && st.start == start
}
