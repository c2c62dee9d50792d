package jobs

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// Back-off of cgroup containment after the kernel refused it. A refusal
// is usually for good (no delegation, controllers enabled in noded's own
// cgroup), so retrying soon would cost every call a failed clone; but an
// operator who fixes the cause should not have to restart noded, so
// cgroups are tried again, first after cgroupRetryMin, then after twice
// as long each time, up to cgroupRetryMax.
const (
	cgroupRetryMin = 30 * time.Second
	cgroupRetryMax = 10 * time.Minute
)

// cgroupState is what a table knows of whether the kernel lets it start
// calls in cgroups of their own: refused (a back-off runs), and when to
// try again.
type cgroupState struct {
	mu      sync.Mutex
	retryAt time.Time
	backoff time.Duration // 0 unless the kernel refused since the last call it started in its cgroup
}

// tryCgroup reports whether the next call should be started in a cgroup:
// not while a refusal's back-off runs.
func (s *cgroupState) tryCgroup(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backoff == 0 || !now.Before(s.retryAt)
}

// refuse records a refusal at now and returns the back-off until the
// next try.
func (s *cgroupState) refuse(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backoff = min(max(2*s.backoff, cgroupRetryMin), cgroupRetryMax)
	s.retryAt = now.Add(s.backoff)
	return s.backoff
}

// accept records a call started in its cgroup, and reports whether that
// ends a refusal.
func (s *cgroupState) accept() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.backoff > 0
	s.backoff = 0
	return was
}

// isRefused reports whether calls are being started without cgroups.
func (s *cgroupState) isRefused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backoff > 0
}

// refusesCgroup reports whether err, from starting a process in a cgroup,
// may be the kernel refusing the cgroup rather than the executable: the
// errors of clone3 with CLONE_INTO_CGROUP (EBUSY: the cgroup may not hold
// processes; EOPNOTSUPP: a threaded cgroup; ENODEV: it was removed;
// EBADF: not a cgroup; EINVAL, ENOSYS, E2BIG: no clone3 or no
// CLONE_INTO_CGROUP; EPERM: a security module said no). The errors of
// execve (ENOENT, EACCES, ENOEXEC, ETXTBSY, ...) are the call's own:
// the same start without a cgroup would fail the same way, or, for a
// function file being replaced, would succeed by chance a moment later
// and wrongly blame the cgroup.
func refusesCgroup(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EBUSY, syscall.EOPNOTSUPP, syscall.ENODEV, syscall.EBADF,
		syscall.EINVAL, syscall.ENOSYS, syscall.E2BIG, syscall.EPERM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
