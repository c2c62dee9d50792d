package jobs

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// KillOrphans kills what earlier daemons on this host left running: the
// call cgroups of daemons that no longer run, and every process marked
// (DaemonEnv) by such a daemon. It returns how many processes it
// signalled, and logs each it killed, by PID. A daemon calls it once
// before it makes its table; New kills nothing, so a process may hold
// several tables.
func KillOrphans(log *slog.Logger) int {
	n := reapStaleCgroups(log)
	pids, err := orphans()
	if err != nil {
		log.Warn("looking for processes of earlier daemons", "err", err)
	}
	var killed []int
	for _, pid := range pids {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	if len(killed) > 0 {
		log.Info("killed processes left by earlier daemons", "count", len(killed), "pids", killed)
	}
	return n + len(killed)
}

// orphans returns the PIDs of the processes marked by a daemon that no
// longer runs. Processes it may not read are skipped: they are not
// noded's (noded runs as root).
func orphans() ([]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	prefix := []byte(DaemonEnv + "=")
	verdict := map[string]bool{} // tag -> its daemon runs
	var pids []int
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
			if !runs {
				pids = append(pids, pid)
			}
			break
		}
	}
	return pids, nil
}
