package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/noderpc/noderpc/rpc/wire"
)

// RegisterBuiltins registers the functions every noded offers: echo, sleep,
// version and node_info. They are what a master uses to check that a node
// answers (echo, version), to exercise timeouts and cancellation (sleep),
// and to learn what a node has (node_info).
func RegisterBuiltins(r *Registry) {
	r.register("echo", Echo, true)
	r.register("sleep", Sleep, true)
	r.register("version", Version, true)
	r.register("node_info", NodeInfoFunc, true)
}

// DecodeArgs decodes a function's fn_args into v strictly: unknown fields,
// wrong types and trailing data are errors that say what was wrong, so a
// typo in a caller's arguments fails the call instead of being ignored.
// Absent or null args leave v unchanged, so v's zero value or defaults
// stand for "no arguments".
func DecodeArgs(args json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(args)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	if err := wire.UnmarshalStrict(trimmed, v, wire.RefuseUnknownFields); err != nil {
		return fmt.Errorf("bad fn_args: %v", err)
	}
	return nil
}

// Echo is the echo builtin: it returns fn_args unchanged (null when
// absent), which proves the whole path from master to function process and
// back works.
func Echo(ctx context.Context, args json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(args)) == 0 {
		return json.RawMessage("null"), nil
	}
	return args, nil
}

// SleepArgs are the arguments of the sleep builtin.
type SleepArgs struct {
	// Seconds is how long to sleep; required, >= 0.
	Seconds *float64 `json:"seconds"`
}

// SleepResult is the result of the sleep builtin.
type SleepResult struct {
	// Slept is the number of seconds asked for and slept.
	Slept float64 `json:"slept"`
}

// Sleep is the sleep builtin: {"seconds": n} sleeps n seconds and returns
// {"slept": n}. It stops early, failing with kind cancelled, when the call
// is cancelled, which makes it the function to test timeouts, abort_after
// and CancelFunction with.
func Sleep(ctx context.Context, args json.RawMessage) (any, error) {
	var a SleepArgs
	if err := DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Seconds == nil {
		return nil, errors.New(`sleep needs fn_args {"seconds": n}`)
	}
	secs := *a.Seconds
	if secs < 0 {
		return nil, fmt.Errorf("sleep: seconds must be >= 0, got %v", secs)
	}
	// Done before the line: from the line on, a SIGTERM cancels the
	// sleep rather than ends the process (see ServeFunction).
	done := ctx.Done()
	Logger(ctx).Info("sleeping", "seconds", secs)
	start := time.Now()
	t := time.NewTimer(wire.Duration(secs))
	defer t.Stop()
	select {
	case <-t.C:
		return SleepResult{Slept: secs}, nil
	case <-done:
		return nil, fmt.Errorf("sleep stopped after %.3fs of %gs: %w", time.Since(start).Seconds(), secs, ctx.Err())
	}
}

// VersionInfo is the result of the version builtin.
type VersionInfo struct {
	// Version is the noderpc release the function process was built from.
	Version string `json:"version"`
	// Protocol is the wire.ProtocolVersion it speaks.
	Protocol int `json:"protocol"`
	// Go is the Go release it was built with.
	Go string `json:"go"`
}

// Version is the version builtin. It answers from the function process,
// so it reports the code that actually runs Go functions (normally the
// daemon's own binary), which a master can compare across nodes.
func Version(ctx context.Context, args json.RawMessage) (any, error) {
	return VersionInfo{Version: wire.Version, Protocol: wire.ProtocolVersion, Go: runtime.Version()}, nil
}

// MaxNodeInfoPaths bounds the paths node_info reports on, so one call
// cannot make the node stat an unbounded list.
const MaxNodeInfoPaths = 64

// maxProcFile bounds what node_info reads from a /proc file; the files it
// reads are a few kilobytes at most.
const maxProcFile = 1 << 20

// NodeInfoArgs are the arguments of the node_info builtin.
type NodeInfoArgs struct {
	// Paths are the absolute paths whose file system usage to report;
	// absent means ["/"]. At most MaxNodeInfoPaths.
	Paths []string `json:"paths"`
}

// NodeInfo is the result of the node_info builtin. A part that could not
// be read is left zero and explained in Errors: a node with a restricted
// /proc still reports what it can.
type NodeInfo struct {
	Hostname string `json:"hostname"`
	// NumCPU is the number of CPUs the function process may use.
	NumCPU int `json:"num_cpu"`
	// LoadAvg holds the 1, 5 and 15 minute load averages.
	LoadAvg []float64 `json:"load_avg"`
	// MemTotalBytes and MemAvailableBytes come from /proc/meminfo.
	MemTotalBytes     uint64 `json:"mem_total_bytes"`
	MemAvailableBytes uint64 `json:"mem_available_bytes"`
	// UptimeSeconds is how long the node has been up.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Disks has one entry per requested path, in order.
	Disks []DiskUsage `json:"disks"`
	// Errors lists what could not be read.
	Errors []string `json:"errors,omitempty"`
}

// DiskUsage is the usage of the file system holding Path. Either Error is
// set or the byte counts are.
type DiskUsage struct {
	Path string `json:"path"`
	// TotalBytes is the file system's size.
	TotalBytes uint64 `json:"total_bytes"`
	// FreeBytes is free space, including space reserved for root.
	FreeBytes uint64 `json:"free_bytes"`
	// AvailBytes is free space an unprivileged user may use (df's Avail).
	AvailBytes uint64 `json:"avail_bytes"`
	// Error says why the path could not be reported on.
	Error string `json:"error,omitempty"`
}

// NodeInfoFunc is the node_info builtin: {"paths": [...]} (optional)
// returns a NodeInfo. A path that cannot be inspected gets an error in its
// DiskUsage instead of failing the call, because a master asking about
// many nodes' mounts wants the rest of the answer.
func NodeInfoFunc(ctx context.Context, args json.RawMessage) (any, error) {
	a := NodeInfoArgs{Paths: []string{"/"}}
	if err := DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.Paths) > MaxNodeInfoPaths {
		return nil, fmt.Errorf("node_info: %d paths, at most %d allowed", len(a.Paths), MaxNodeInfoPaths)
	}
	return readNodeInfo("/proc", a.Paths), nil
}

// readNodeInfo gathers a NodeInfo from the proc file system at proc.
func readNodeInfo(proc string, paths []string) NodeInfo {
	info := NodeInfo{NumCPU: runtime.NumCPU(), LoadAvg: []float64{}, Disks: []DiskUsage{}}
	note := func(err error) { info.Errors = append(info.Errors, err.Error()) }
	var err error
	if info.Hostname, err = os.Hostname(); err != nil {
		note(fmt.Errorf("hostname: %w", err))
	}
	if info.LoadAvg, err = readLoadAvg(filepath.Join(proc, "loadavg")); err != nil {
		info.LoadAvg = []float64{}
		note(err)
	}
	if info.MemTotalBytes, info.MemAvailableBytes, err = readMemInfo(filepath.Join(proc, "meminfo")); err != nil {
		note(err)
	}
	if info.UptimeSeconds, err = readUptime(filepath.Join(proc, "uptime")); err != nil {
		note(err)
	}
	for _, p := range paths {
		info.Disks = append(info.Disks, diskUsage(p))
	}
	return info
}

// readProcFile reads a small /proc file through a size limit.
func readProcFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxProcFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxProcFile)
	}
	return b, nil
}

// readLoadAvg parses "0.52 0.58 0.59 1/467 12345".
func readLoadAvg(path string) ([]float64, error) {
	b, err := readProcFile(path)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil, fmt.Errorf("%s: want three load averages, got %q", path, b)
	}
	load := make([]float64, 3)
	for i := range load {
		if load[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return load, nil
}

// readMemInfo returns MemTotal and MemAvailable in bytes from lines like
// "MemTotal:       16314528 kB".
func readMemInfo(path string) (total, avail uint64, err error) {
	b, err := readProcFile(path)
	if err != nil {
		return 0, 0, err
	}
	var haveTotal, haveAvail bool
	for line := range strings.Lines(string(b)) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, 0, fmt.Errorf("%s: no value in %q", path, line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		if key == "MemTotal" {
			total, haveTotal = n, true
		} else {
			avail, haveAvail = n, true
		}
	}
	if !haveTotal || !haveAvail {
		return total, avail, fmt.Errorf("%s: MemTotal or MemAvailable missing", path)
	}
	return total, avail, nil
}

// readUptime parses "350735.47 234388.90": seconds up, seconds idle.
func readUptime(path string) (float64, error) {
	b, err := readProcFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s is empty", path)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return up, nil
}

// diskUsage reports the file system holding path, as df does.
func diskUsage(path string) DiskUsage {
	d := DiskUsage{Path: path}
	if !filepath.IsAbs(path) {
		d.Error = "not an absolute path"
		return d
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		d.Error = (&os.PathError{Op: "statfs", Path: path, Err: err}).Error()
		return d
	}
	// Block counts are in units of the fragment size; Bsize is only the
	// preferred I/O size, though most file systems make them equal.
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	d.TotalBytes = st.Blocks * unit
	d.FreeBytes = st.Bfree * unit
	d.AvailBytes = st.Bavail * unit
	return d
}
