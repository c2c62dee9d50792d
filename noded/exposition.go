package noded

import (
	"bytes"
	"io"
	"strings"
)

// family is one metric family of noded's /metrics: its Prometheus type
// and the help text scrapers show.
type family struct {
	typ, help string
}

// families are every family noded exports, with the type and help that
// /metrics writes before the family's first sample. The VictoriaMetrics
// library writes samples without them, or, with its ExposeMetadata, with
// empty help and some of its counters typed as gauges; so noded keeps
// the metadata itself, for its own families and the library's Go and
// process ones alike. A family missing here is written without
// metadata, which the tests refuse (doc/operations.md lists them all).
var families = map[string]family{
	"noded_build_info":                    {"gauge", "Always 1; the labels name noded's release, protocol version and Go version."},
	"noded_calls_started_total":           {"counter", "Calls whose function process started, by function."},
	"noded_calls_finished_total":          {"counter", "Calls that ended, by function and final state."},
	"noded_calls_rejected_total":          {"counter", "Starts refused before any process ran, by reason (an rpc error kind)."},
	"noded_calls_dropped_total":           {"counter", "Finished calls dropped: released by a client, or expired after the retention period."},
	"noded_calls_running":                 {"gauge", "Calls running now."},
	"noded_calls_running_limit":           {"gauge", "The most calls that may run at once (max-running)."},
	"noded_calls_retained":                {"gauge", "Finished calls held, not yet released or expired."},
	"noded_warm_processes_idle":           {"gauge", "Warm Go function processes waiting for a call."},
	"noded_start_requests_in_flight":      {"gauge", "StartFunction requests being answered."},
	"noded_wait_requests_in_flight":       {"gauge", "WaitForFunction requests being answered."},
	"noded_start_time_seconds":            {"gauge", "When this daemon started, in Unix seconds."},
	"noded_containment":                   {"gauge", "1 for the mode new calls are contained in now (cgroup or process-group), 0 for the other."},
	"noded_connections_open":              {"gauge", "Connections admitted now."},
	"noded_connections_limit":             {"gauge", "The most connections admitted at once (max-conns)."},
	"noded_connections_refused_total":     {"counter", "Connections refused at the listener, by the limit that refused them."},
	"noded_connections_idle_closed_total": {"counter", "Idle keep-alive connections closed to admit a new one at max-conns."},
	"noded_master_session":                {"gauge", "1 while the node holds a session with a master (noded --master), 0 otherwise."},
	"noded_spawn_seconds":                 {"histogram", "Time to start a function process."},
	"noded_call_duration_seconds":         {"histogram", "Time from a call's start to its end, by function."},

	"go_info":                             {"gauge", "Always 1; the label names the Go version noded was built with."},
	"go_info_ext":                         {"gauge", "Always 1; the labels name the compiler, architecture, OS and GOROOT of the build."},
	"go_cpu_cores":                        {"gauge", "CPU cores of the host."},
	"go_gomaxprocs":                       {"gauge", "GOMAXPROCS: the CPUs the Go scheduler uses at once."},
	"go_goroutines":                       {"gauge", "Goroutines that exist now."},
	"go_threads":                          {"gauge", "OS threads the Go runtime created."},
	"go_cgo_calls_total":                  {"counter", "Calls from Go into C."},
	"go_sched_latencies_seconds":          {"histogram", "Time goroutines waited to run once runnable."},
	"go_mutex_wait_seconds_total":         {"counter", "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex."},
	"go_gc_cpu_seconds_total":             {"counter", "CPU time spent in garbage collection."},
	"go_gc_mark_assist_cpu_seconds_total": {"counter", "CPU time goroutines spent helping the garbage collector mark."},
	"go_scavenge_cpu_seconds_total":       {"counter", "CPU time spent returning memory to the OS."},
	"go_gc_pauses_seconds":                {"histogram", "Stop-the-world pauses of the garbage collector."},
	"go_gc_duration_seconds":              {"summary", "Stop-the-world pauses of the garbage collector, as quantiles of the last ones."},
	"go_gc_forced_total":                  {"counter", "Garbage collections forced by the program (runtime.GC)."},
	"go_memlimit_bytes":                   {"gauge", "The Go runtime's soft memory limit (GOMEMLIMIT)."},
	"go_memstats_alloc_bytes":             {"gauge", "Bytes of heap objects allocated and not yet freed."},
	"go_memstats_alloc_bytes_total":       {"counter", "Bytes of heap objects allocated, ever."},
	"go_memstats_mallocs_total":           {"counter", "Heap objects allocated, ever."},
	"go_memstats_frees_total":             {"counter", "Heap objects freed, ever."},
	"go_memstats_lookups_total":           {"counter", "Pointer lookups by the runtime."},
	"go_memstats_heap_alloc_bytes":        {"gauge", "Bytes of heap objects allocated and not yet freed."},
	"go_memstats_heap_idle_bytes":         {"gauge", "Bytes of heap spans with no object."},
	"go_memstats_heap_inuse_bytes":        {"gauge", "Bytes of heap spans with at least one object."},
	"go_memstats_heap_objects":            {"gauge", "Heap objects allocated and not yet freed."},
	"go_memstats_heap_released_bytes":     {"gauge", "Bytes of heap returned to the OS."},
	"go_memstats_heap_sys_bytes":          {"gauge", "Bytes of heap obtained from the OS."},
	"go_memstats_next_gc_bytes":           {"gauge", "Heap size at which the next garbage collection starts."},
	"go_memstats_last_gc_time_seconds":    {"gauge", "When the last garbage collection ended, in Unix seconds."},
	"go_memstats_gc_cpu_fraction":         {"gauge", "Fraction of CPU time used by the garbage collector since the program started."},
	"go_memstats_gc_sys_bytes":            {"gauge", "Bytes of garbage collection metadata."},
	"go_memstats_buck_hash_sys_bytes":     {"gauge", "Bytes of profiling bucket hash tables."},
	"go_memstats_mcache_inuse_bytes":      {"gauge", "Bytes of mcache structures in use."},
	"go_memstats_mcache_sys_bytes":        {"gauge", "Bytes of mcache structures obtained from the OS."},
	"go_memstats_mspan_inuse_bytes":       {"gauge", "Bytes of mspan structures in use."},
	"go_memstats_mspan_sys_bytes":         {"gauge", "Bytes of mspan structures obtained from the OS."},
	"go_memstats_other_sys_bytes":         {"gauge", "Bytes of other runtime allocations obtained from the OS."},
	"go_memstats_stack_inuse_bytes":       {"gauge", "Bytes of goroutine stacks in use."},
	"go_memstats_stack_sys_bytes":         {"gauge", "Bytes of goroutine stacks obtained from the OS."},
	"go_memstats_sys_bytes":               {"gauge", "Bytes the Go runtime obtained from the OS in all."},

	"process_start_time_seconds":             {"gauge", "When the process started, in Unix seconds."},
	"process_cpu_seconds_total":              {"counter", "CPU time of the process, user and system."},
	"process_cpu_seconds_user_total":         {"counter", "CPU time of the process in user mode."},
	"process_cpu_seconds_system_total":       {"counter", "CPU time of the process in the kernel."},
	"process_major_pagefaults_total":         {"counter", "Page faults that read from disk."},
	"process_minor_pagefaults_total":         {"counter", "Page faults served without reading from disk."},
	"process_num_threads":                    {"gauge", "Threads of the process."},
	"process_open_fds":                       {"gauge", "File descriptors the process holds open."},
	"process_max_fds":                        {"gauge", "The process's limit on open file descriptors (RLIMIT_NOFILE)."},
	"process_resident_memory_bytes":          {"gauge", "Resident memory of the process."},
	"process_resident_memory_peak_bytes":     {"gauge", "Highest resident memory of the process so far."},
	"process_resident_memory_anon_bytes":     {"gauge", "Resident anonymous memory of the process (heap, stacks)."},
	"process_resident_memory_file_bytes":     {"gauge", "Resident memory of the process mapped from files."},
	"process_resident_memory_shared_bytes":   {"gauge", "Resident shared memory of the process."},
	"process_virtual_memory_bytes":           {"gauge", "Virtual memory of the process."},
	"process_virtual_memory_peak_bytes":      {"gauge", "Highest virtual memory of the process so far."},
	"process_io_read_bytes_total":            {"counter", "Bytes the process read, from any file or socket."},
	"process_io_written_bytes_total":         {"counter", "Bytes the process wrote, to any file or socket."},
	"process_io_read_syscalls_total":         {"counter", "Read system calls of the process."},
	"process_io_write_syscalls_total":        {"counter", "Write system calls of the process."},
	"process_io_storage_read_bytes_total":    {"counter", "Bytes the process caused to be read from storage."},
	"process_io_storage_written_bytes_total": {"counter", "Bytes the process caused to be written to storage."},
}

// renamed are the library's series whose names break the Prometheus
// naming rules (promtool check metrics): a counter must end in _total,
// and only histograms and summaries may end in _count.
var renamed = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpu_cores",
}

// writeAnnotated copies the exposition text to w with the HELP and TYPE
// lines of each family before its first sample, renaming the series of
// renamed. Comment lines in text are dropped: families is the one source
// of metadata. The samples of one family must be adjacent in text, as
// the library and the histograms write them.
func writeAnnotated(w io.Writer, text []byte) {
	var out bytes.Buffer
	prev := ""
	for len(text) > 0 {
		var line []byte
		line, text, _ = bytes.Cut(text, []byte("\n"))
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ ")
		if end < 0 {
			end = len(line)
		}
		name := string(line[:end])
		if to, ok := renamed[name]; ok {
			line = append([]byte(to), line[len(name):]...)
			name = to
		}
		fam, f, ok := familyOf(name)
		if ok && fam != prev {
			out.WriteString("# HELP " + fam + " " + f.help + "\n# TYPE " + fam + " " + f.typ + "\n")
		}
		prev = fam
		out.Write(line)
		out.WriteByte('\n')
	}
	w.Write(out.Bytes())
}

// familyOf returns the family the series name belongs to: itself, or,
// for the _bucket, _sum and _count series of a histogram or summary,
// the name without that suffix.
func familyOf(name string) (string, family, bool) {
	if f, ok := families[name]; ok {
		return name, f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, cut := strings.CutSuffix(name, suffix)
		if f, ok := families[base]; cut && ok && (f.typ == "histogram" || f.typ == "summary") {
			return base, f, true
		}
	}
	return name, family{}, false
}
