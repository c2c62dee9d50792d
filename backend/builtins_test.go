package backend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/goccy/go-json"
	"github.com/noderpc/noderpc/rpc"
)

// callBuiltin runs fn with args and returns its result as JSON.
func callBuiltin(t *testing.T, ctx context.Context, fn Func, args string) (string, error) {
	t.Helper()
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	v, err := fn(ctx, raw)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("result %#v does not encode: %v", v, err)
	}
	return string(b), nil
}

func TestEcho(t *testing.T) {
	tests := []struct{ args, want string }{
		{"", "null"},
		{"null", "null"},
		{`{"a":1}`, `{"a":1}`},
		{`[1,"two",3.5]`, `[1,"two",3.5]`},
		{`"a\"b"`, `"a\"b"`},
	}
	for _, tt := range tests {
		got, err := callBuiltin(t, t.Context(), Echo, tt.args)
		if err != nil || got != tt.want {
			t.Errorf("echo(%s) = %s, %v; want %s", tt.args, got, err, tt.want)
		}
	}
}

func TestSleep(t *testing.T) {
	tests := []struct {
		args    string
		want    string
		wantErr string
	}{
		{args: `{"seconds": 0}`, want: `{"slept":0}`},
		{args: `{"seconds": 0.25}`, want: `{"slept":0.25}`},
		{args: `{"seconds": 3600}`, want: `{"slept":3600}`},
		{args: ``, wantErr: `needs fn_args {"seconds": n}`},
		{args: `{}`, wantErr: `needs fn_args {"seconds": n}`},
		{args: `{"seconds": -1}`, wantErr: "must be >= 0"},
		{args: `{"seconds": "5"}`, wantErr: "bad fn_args"},
		{args: `{"seconds": 1, "extra": true}`, wantErr: "unknown field"},
		{args: `{"seconds": 1} {}`, wantErr: "after the JSON value"},
		{args: `[1]`, wantErr: "bad fn_args"},
	}
	for _, tt := range tests {
		// The bubble's fake clock makes an hour's sleep instant.
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			got, err := callBuiltin(t, t.Context(), Sleep, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("sleep(%s) = %s, %v; want error %q", tt.args, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("sleep(%s) = %s, %v; want %s", tt.args, got, err, tt.want)
			}
			var a SleepArgs
			json.Unmarshal([]byte(tt.args), &a)
			if slept, want := time.Since(start), rpc.Duration(*a.Seconds); slept != want {
				t.Errorf("sleep(%s) took %v, want %v", tt.args, slept, want)
			}
		})
	}
}

func TestSleepCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(10*time.Second, cancel)
		start := time.Now()
		_, err := Sleep(ctx, json.RawMessage(`{"seconds": 3600}`))
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped after 10.000s of 3600s") {
			t.Errorf("sleep(3600) cancelled at 10s = %v, want context.Canceled saying how long it slept", err)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("sleep(3600) cancelled at 10s returned after %v", got)
		}
		if e := resultError(ctx, err); e.Kind != rpc.KindCancelled {
			t.Errorf("resultError(%v) kind = %s, want %s", err, e.Kind, rpc.KindCancelled)
		}
	})
}

func TestVersion(t *testing.T) {
	got, err := callBuiltin(t, t.Context(), Version, "")
	want := `{"version":"` + rpc.Version + `","protocol":` + strconv.Itoa(rpc.ProtocolVersion) + `,"go":"` + runtime.Version() + `"}`
	if err != nil || got != want {
		t.Errorf("version() = %s, %v; want %s", got, err, want)
	}
}

func TestNodeInfoReal(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	v, err := NodeInfoFunc(t.Context(), json.RawMessage(`{"paths": ["/", "`+missing+`", "relative"]}`))
	if err != nil {
		t.Fatalf("node_info: %v", err)
	}
	info := v.(NodeInfo)
	host, _ := os.Hostname()
	if info.Hostname != host || info.NumCPU != runtime.NumCPU() {
		t.Errorf("node_info hostname, CPUs = %q, %d; want %q, %d", info.Hostname, info.NumCPU, host, runtime.NumCPU())
	}
	if len(info.LoadAvg) != 3 || info.MemTotalBytes == 0 || info.MemAvailableBytes > info.MemTotalBytes || info.UptimeSeconds <= 0 {
		t.Errorf("node_info = %+v; want 3 load averages, memory total >= available > 0, uptime > 0", info)
	}
	if len(info.Errors) != 0 {
		t.Errorf("node_info errors = %v, want none", info.Errors)
	}
	if len(info.Disks) != 3 {
		t.Fatalf("node_info disks = %+v, want 3 entries", info.Disks)
	}
	root := info.Disks[0]
	if root.Path != "/" || root.Error != "" || root.TotalBytes == 0 || root.FreeBytes > root.TotalBytes || root.AvailBytes > root.FreeBytes {
		t.Errorf("node_info disk / = %+v; want total >= free >= avail, total > 0", root)
	}
	if d := info.Disks[1]; d.Path != missing || !strings.Contains(d.Error, "no such file") || d.TotalBytes != 0 {
		t.Errorf("node_info disk %s = %+v; want a per-path error", missing, d)
	}
	if d := info.Disks[2]; !strings.Contains(d.Error, "not an absolute path") {
		t.Errorf("node_info disk relative = %+v; want a per-path error", d)
	}
}

func TestNodeInfoArgs(t *testing.T) {
	tooMany, _ := json.Marshal(NodeInfoArgs{Paths: slices.Repeat([]string{"/"}, MaxNodeInfoPaths+1)})
	tests := []struct {
		args      string
		wantPaths []string
		wantErr   string
	}{
		{args: "", wantPaths: []string{"/"}},
		{args: "null", wantPaths: []string{"/"}},
		{args: `{}`, wantPaths: []string{"/"}},
		{args: `{"paths": []}`, wantPaths: []string{}},
		{args: `{"paths": ["/", "/"]}`, wantPaths: []string{"/", "/"}},
		{args: `{"path": "/"}`, wantErr: "unknown field"},
		{args: `{"paths": "/"}`, wantErr: "bad fn_args"},
		{args: string(tooMany), wantErr: "at most 64"},
	}
	for _, tt := range tests {
		v, err := NodeInfoFunc(t.Context(), json.RawMessage(tt.args))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("node_info(%.40s) error = %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("node_info(%s) error = %v", tt.args, err)
			continue
		}
		var got []string
		for _, d := range v.(NodeInfo).Disks {
			got = append(got, d.Path)
		}
		if !slices.Equal(got, tt.wantPaths) {
			t.Errorf("node_info(%s) disks for %v, want %v", tt.args, got, tt.wantPaths)
		}
	}
}

// TestNodeInfoProc parses proc files of known content, including broken
// ones, which must leave the rest of the answer intact.
func TestNodeInfoProc(t *testing.T) {
	tests := []struct {
		desc       string
		files      map[string]string
		wantLoad   []float64
		wantTotal  uint64
		wantAvail  uint64
		wantUptime float64
		wantErrs   []string
	}{
		{
			desc: "good",
			files: map[string]string{
				"loadavg": "0.52 1.58 2.59 1/467 12345\n",
				"meminfo": "MemTotal:       16314528 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n",
				"uptime":  "350735.47 234388.90\n",
			},
			wantLoad: []float64{0.52, 1.58, 2.59}, wantTotal: 16314528 * 1024, wantAvail: 8000000 * 1024, wantUptime: 350735.47,
		},
		{
			desc:     "missing files",
			files:    map[string]string{},
			wantLoad: []float64{},
			wantErrs: []string{"loadavg", "meminfo", "uptime"},
		},
		{
			desc: "garbage",
			files: map[string]string{
				"loadavg": "0.5 x\n",
				"meminfo": "MemTotal: lots kB\n",
				"uptime":  "\n",
			},
			wantLoad: []float64{},
			wantErrs: []string{"three load averages", "MemTotal", "uptime is empty"},
		},
		{
			desc: "too large",
			files: map[string]string{
				"loadavg": strings.Repeat("1 ", maxProcFile),
				"meminfo": "MemTotal: 1 kB\nMemAvailable: 1 kB\n",
				"uptime":  "1.5 1\n",
			},
			wantLoad: []float64{}, wantTotal: 1024, wantAvail: 1024, wantUptime: 1.5,
			wantErrs: []string{"larger than"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			proc := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(proc, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := readNodeInfo(proc, nil)
			if !slices.Equal(got.LoadAvg, tt.wantLoad) || got.MemTotalBytes != tt.wantTotal || got.MemAvailableBytes != tt.wantAvail || got.UptimeSeconds != tt.wantUptime {
				t.Errorf("readNodeInfo(%s) = load %v, mem %d/%d, uptime %v; want load %v, mem %d/%d, uptime %v",
					tt.desc, got.LoadAvg, got.MemAvailableBytes, got.MemTotalBytes, got.UptimeSeconds,
					tt.wantLoad, tt.wantAvail, tt.wantTotal, tt.wantUptime)
			}
			if len(got.Errors) != len(tt.wantErrs) {
				t.Fatalf("readNodeInfo(%s) errors = %q, want %d mentioning %q", tt.desc, got.Errors, len(tt.wantErrs), tt.wantErrs)
			}
			for i, want := range tt.wantErrs {
				if !strings.Contains(got.Errors[i], want) {
					t.Errorf("readNodeInfo(%s) error %d = %q, want it to mention %q", tt.desc, i, got.Errors[i], want)
				}
			}
			// The wire shape never has null lists.
			b, _ := json.Marshal(got)
			if strings.Contains(string(b), "null") {
				t.Errorf("readNodeInfo(%s) encodes as %s, want no nulls", tt.desc, b)
			}
		})
	}
}

func TestResultError(t *testing.T) {
	cancelled, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("SIGTERM"))
	tests := []struct {
		desc     string
		ctx      context.Context
		err      error
		wantKind rpc.Kind
		wantMsg  string
	}{
		{"plain", context.Background(), errors.New("disk full"), rpc.KindFunctionFailed, "disk full"},
		{"own kind", context.Background(), rpc.Errorf(rpc.KindResultTooLarge, "too big"), rpc.KindResultTooLarge, "too big"},
		{"own kind wrapped", context.Background(), errors.Join(errors.New("x"), &rpc.Error{Kind: rpc.KindAborted}), rpc.KindAborted, "x"},
		{"no kind", context.Background(), &rpc.Error{Message: "m"}, rpc.KindFunctionFailed, "m"},
		{"cancelled", cancelled, context.Canceled, rpc.KindCancelled, "SIGTERM"},
		{"cancelled but failed otherwise", cancelled, errors.New("disk full"), rpc.KindFunctionFailed, "disk full"},
		{"not cancelled but says so", context.Background(), context.Canceled, rpc.KindFunctionFailed, "canceled"},
	}
	for _, tt := range tests {
		got := resultError(tt.ctx, tt.err)
		if got.Kind != tt.wantKind || !strings.Contains(got.Message, tt.wantMsg) {
			t.Errorf("%s: resultError(%v) = %v, want kind %s with %q", tt.desc, tt.err, got, tt.wantKind, tt.wantMsg)
		}
	}
}
