package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DaemonEnv is the environment variable that marks every function process,
// and everything it starts, with the daemon that started it:
// "<pid>.<start time in clock ticks>". A daemon killed with SIGKILL cannot
// stop its calls' descendants (the parent-death signal reaches only the
// function process itself), so the next daemon looks for processes that
// carry the mark of a daemon that no longer runs and kills them. It is
// what stops a grandchild outliving its daemon under process-group
// containment; with cgroups the stale cgroups catch even a descendant that
// scrubbed its environment.
const DaemonEnv = "NODERPC_DAEMON"

// daemonTag returns this process's mark: its PID and start time, so that a
// recycled PID is not taken for the same daemon.
func daemonTag() (string, error) {
	start, err := startTime(os.Getpid())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d", os.Getpid(), start), nil
}

// startTime returns a process's start time in clock ticks since boot,
// field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the daemon of tag still runs.
func alive(tag string) bool {
	pidText, startText, ok := strings.Cut(tag, ".")
	pid, err1 := strconv.Atoi(pidText)
	start, err2 := strconv.ParseUint(startText, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return false
	}
	got, err := startTime(pid)
	return err == nil && got == start
}

// killOrphans SIGKILLs every process marked by a daemon that no longer
// runs, and returns how many it killed. Processes it may not read are
// skipped: they are not noded's (noded runs as root).
func killOrphans(log *slog.Logger) int {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		log.Warn("looking for processes of earlier daemons", "err", err)
		return 0
	}
	prefix := []byte(DaemonEnv + "=")
	verdict := map[string]bool{} // tag -> its daemon runs
	killed := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			tag, ok := bytes.CutPrefix(kv, prefix)
			if !ok {
				continue
			}
			runs, seen := verdict[string(tag)]
			if !seen {
				runs = alive(string(tag))
				verdict[string(tag)] = runs
			}
			if !runs && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
			break
		}
	}
	return killed
}
