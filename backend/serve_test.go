package backend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/noderpc/noderpc/rpc"
)

// helperEnv selects a helper mode of the test binary, which then acts as a
// function process instead of running tests (STYLE.md item 12).
const helperEnv = "NODERPC_BACKEND_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		// Exactly what a noded main does.
		os.Exit(ServeFunction(testRegistry(), os.Stdin, os.Stdout, os.Stderr))
	case "comm":
		// The name init gave the process, as ps shows it.
		b, err := os.ReadFile("/proc/self/comm")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Stdout.Write(b)
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(3)
	}
}

// testRegistry holds the builtins and functions that misbehave on purpose.
func testRegistry() *Registry {
	r := NewRegistry()
	RegisterBuiltins(r)
	r.Register("fail", func(ctx context.Context, args json.RawMessage) (any, error) {
		Logger(ctx).Info("about to fail")
		return nil, errors.New("boom")
	})
	r.Register("fail_kind", func(ctx context.Context, args json.RawMessage) (any, error) {
		return nil, fmt.Errorf("wrapped: %w", rpc.Errorf(rpc.KindAborted, "chose my kind"))
	})
	r.Register("logger_made", func(ctx context.Context, args json.RawMessage) (any, error) {
		// Whether the call's logger was made before the function asked
		// for it; then it asks twice.
		lazy, ok := ctx.Value(loggerKey{}).(*lazyLogger)
		made := !ok || lazy.l != nil
		if first := Logger(ctx); first != Logger(ctx) {
			return nil, errors.New("two Logger calls gave two loggers")
		}
		Logger(ctx).Info("asked")
		return made, nil
	})
	r.Register("panic", func(ctx context.Context, args json.RawMessage) (any, error) {
		panic("kaboom")
	})
	r.Register("unencodable", func(ctx context.Context, args json.RawMessage) (any, error) {
		return make(chan int), nil
	})
	r.Register("print", func(ctx context.Context, args json.RawMessage) (any, error) {
		// A careless function: this must end up in the log, not in the
		// protocol.
		fmt.Println("stray print to stdout")
		cmd := exec.Command("echo", "stray child output")
		cmd.Stdout = os.Stdout
		if err := cmd.Run(); err != nil {
			return nil, err
		}
		return "printed", nil
	})
	r.Register("spawn", func(ctx context.Context, args json.RawMessage) (any, error) {
		// A grandchild that outlives the function and inherits stdio.
		cmd := exec.Command("sleep", "60")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd.Process.Pid, nil
	})
	r.Register("stdoutfd", func(ctx context.Context, args json.RawMessage) (any, error) {
		return os.Stdout.Fd(), nil
	})
	r.Register("block", func(ctx context.Context, args json.RawMessage) (any, error) {
		// A function that never looks at its context.
		Logger(ctx).Info("blocking")
		time.Sleep(time.Hour)
		return nil, nil
	})
	return r
}

// outcome is what a function process did, as noded would see it.
type outcome struct {
	hello  rpc.Hello
	result rpc.FunctionResult
	code   int
	stderr string
}

// lineWatcher is a stderr that reports when a line containing want has
// been written, so tests wait for a function to be running without
// sleeping.
type lineWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func newLineWatcher(want string) *lineWatcher {
	return &lineWatcher{want: want, seen: make(chan struct{})}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.want != "" && strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// serveInProcess runs serve over pipes. It reads the hello before writing
// the request, which proves the function process greets first, then
// writes req and returns what came back. onRunning, if set, is called once
// stderr shows runningLine.
func serveInProcess(t *testing.T, ctx context.Context, req string, runningLine string, onRunning func()) outcome {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	stderr := newLineWatcher(runningLine)
	code := make(chan int, 1)
	go func() {
		c := serve(ctx, testRegistry(), stdinR, stdoutW, stderr, func() {})
		stdoutW.Close()
		code <- c
	}()
	out := bufio.NewReader(stdoutR)
	line, err := out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading hello: %v", err)
	}
	var o outcome
	if o.hello, err = rpc.DecodeHello(line); err != nil {
		t.Fatalf("DecodeHello(%q): %v", line, err)
	}
	if _, err := io.WriteString(stdinW, req); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	stdinW.Close()
	if onRunning != nil {
		go func() {
			select {
			case <-stderr.seen:
				onRunning()
			case <-ctx.Done():
			}
		}()
	}
	rest, err := io.ReadAll(out)
	if err != nil {
		t.Fatalf("reading result: %v", err)
	}
	o.code = <-code
	o.stderr = stderr.String()
	if o.result, err = rpc.DecodeFunctionResult(rest); err != nil {
		t.Fatalf("DecodeFunctionResult(%q): %v (stderr %q)", rest, err, o.stderr)
	}
	return o
}

func request(t *testing.T, name string, args string) string {
	t.Helper()
	req := rpc.FunctionRequest{CallID: "1:2:3.000004:0000000000000005", FnName: name}
	if args != "" {
		req.FnArgs = json.RawMessage(args)
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serveCase is a call and what it must come to, shared by the in-process
// and the real-process tests.
type serveCase struct {
	desc       string
	fn         string
	args       string
	wantCode   int
	wantResult string   // compact JSON, when it succeeds
	wantKind   rpc.Kind // when it fails
	wantMsg    string   // in the error message
	wantStderr []string // each in stderr
}

var serveCases = []serveCase{
	{desc: "echo object", fn: "echo", args: `{"a": [1, 2, {"b": null}]}`, wantCode: 0, wantResult: `{"a":[1,2,{"b":null}]}`},
	{desc: "echo absent args", fn: "echo", wantCode: 0, wantResult: `null`},
	{desc: "echo string", fn: "echo", args: `"hi"`, wantCode: 0, wantResult: `"hi"`},
	{desc: "sleep zero", fn: "sleep", args: `{"seconds": 0}`, wantCode: 0, wantResult: `{"slept":0}`,
		wantStderr: []string{"sleeping", `call_id=1:2:3.000004:0000000000000005`}},
	{desc: "sleep bad args", fn: "sleep", args: `{"secs": 1}`, wantCode: 1, wantKind: rpc.KindFunctionFailed, wantMsg: "unknown field"},
	{desc: "unknown function", fn: "nope", wantCode: 1, wantKind: rpc.KindUnknownFunction, wantMsg: `"nope"`},
	{desc: "function error", fn: "fail", wantCode: 1, wantKind: rpc.KindFunctionFailed, wantMsg: "boom",
		wantStderr: []string{"about to fail", "call_id="}},
	{desc: "function chooses kind", fn: "fail_kind", wantCode: 1, wantKind: rpc.KindAborted, wantMsg: "chose my kind"},
	{desc: "panic", fn: "panic", wantCode: 1, wantKind: rpc.KindFunctionFailed, wantMsg: "panicked: kaboom",
		wantStderr: []string{"panic: kaboom", "goroutine", "function panicked"}},
	{desc: "unencodable result", fn: "unencodable", wantCode: 1, wantKind: rpc.KindFunctionFailed, wantMsg: "cannot be encoded"},
}

func checkOutcome(t *testing.T, tt serveCase, got outcome) {
	t.Helper()
	call := fmt.Sprintf("%s(%s)", tt.fn, tt.args)
	if got.hello.Protocol != rpc.ProtocolVersion || got.hello.PID <= 0 {
		t.Errorf("%s: hello = %+v, want protocol %d and a PID", call, got.hello, rpc.ProtocolVersion)
	}
	if got.code != tt.wantCode {
		t.Errorf("%s: exit code %d, want %d (stderr %q)", call, got.code, tt.wantCode, got.stderr)
	}
	if tt.wantKind == "" {
		if got.result.Error != nil || string(got.result.Result) != tt.wantResult {
			t.Errorf("%s: result %s, error %v; want result %s", call, got.result.Result, got.result.Error, tt.wantResult)
		}
	} else {
		e := got.result.Error
		if e == nil || e.Kind != tt.wantKind || !strings.Contains(e.Message, tt.wantMsg) {
			t.Errorf("%s: error %v (result %s); want kind %s with %q in the message", call, e, got.result.Result, tt.wantKind, tt.wantMsg)
		}
	}
	for _, want := range tt.wantStderr {
		if !strings.Contains(got.stderr, want) {
			t.Errorf("%s: stderr %q does not contain %q", call, got.stderr, want)
		}
	}
}

func TestServeInProcess(t *testing.T) {
	for _, tt := range serveCases {
		t.Run(tt.desc, func(t *testing.T) {
			checkOutcome(t, tt, serveInProcess(t, t.Context(), request(t, tt.fn, tt.args), "", nil))
		})
	}
}

func TestServeLogLines(t *testing.T) {
	got := serveInProcess(t, t.Context(), request(t, "fail", ""), "", nil)
	if !strings.Contains(got.stderr, "about to fail") {
		t.Errorf("stderr %q lacks the function's log line", got.stderr)
	}
	for line := range strings.Lines(got.stderr) {
		if !strings.Contains(line, "call_id=1:2:3.000004:0000000000000005") {
			t.Errorf("log line %q has no call_id", line)
		}
	}
}

// A call's logger is made when its function first asks for it, and
// only once: a function that never logs never makes one.
func TestCallLoggerIsMadeOnFirstUse(t *testing.T) {
	got := serveInProcess(t, t.Context(), request(t, "logger_made", ""), "", nil)
	if got.result.Error != nil || string(got.result.Result) != "false" {
		t.Errorf("logger_made: result %s, error %v; want false (not made before the function asked)", got.result.Result, got.result.Error)
	}
	if !strings.Contains(got.stderr, "msg=asked call_id=1:2:3.000004:0000000000000005") {
		t.Errorf("stderr %q lacks the line the function logged, with its call_id", got.stderr)
	}
}

func TestServeCancelInProcess(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	got := serveInProcess(t, ctx, request(t, "sleep", `{"seconds": 3600}`), "sleeping", func() {
		cancel(errors.New("test cancels"))
	})
	checkOutcome(t, serveCase{fn: "sleep", args: "3600", wantCode: 1, wantKind: rpc.KindCancelled, wantMsg: "test cancels"}, got)
}

func TestServeBadRequest(t *testing.T) {
	tests := []struct {
		desc    string
		stdin   string
		wantMsg string
	}{
		{"empty stdin", "", "without a request"},
		{"garbage", "not json", "malformed request"},
		{"no fn_name", `{"call_id": "x"}`, "no fn_name"},
		{"two frames", `{"fn_name": "echo"} {"fn_name": "echo"}`, "malformed request"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := serve(t.Context(), testRegistry(), strings.NewReader(tt.stdin), &stdout, &stderr, func() {})
			if code != ExitProtocol {
				t.Errorf("serve with stdin %q = %d, want %d", tt.stdin, code, ExitProtocol)
			}
			hello, rest, _ := bytes.Cut(stdout.Bytes(), []byte("\n"))
			if _, err := rpc.DecodeHello(hello); err != nil {
				t.Errorf("serve with stdin %q: first line: %v", tt.stdin, err)
			}
			res, err := rpc.DecodeFunctionResult(rest)
			if err != nil || res.Error == nil || res.Error.Kind != rpc.KindProtocolError || !strings.Contains(res.Error.Message, tt.wantMsg) {
				t.Errorf("serve with stdin %q: result %+v, %v; want protocol_error with %q", tt.stdin, res.Error, err, tt.wantMsg)
			}
			if !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Errorf("serve with stdin %q: stderr %q does not say %q", tt.stdin, stderr.String(), tt.wantMsg)
			}
		})
	}
}

func TestReadRequestLimit(t *testing.T) {
	const limit = 1 << 10
	tests := []struct {
		desc    string
		stdin   io.Reader
		wantErr string
	}{
		{"endless", io.MultiReader(strings.NewReader(`{"fn_name":"echo","fn_args":"`), zeros{}), "larger than 1024 bytes"},
		{"at the limit", strings.NewReader(`{"fn_name":"echo"}` + strings.Repeat(" ", limit-18)), ""},
		{"one over", strings.NewReader(`{"fn_name":"echo"}` + strings.Repeat(" ", limit-17)), "larger than 1024 bytes"},
	}
	for _, tt := range tests {
		_, err := readRequest(tt.stdin, limit)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("readRequest(%s, limit %d) = %v, want error %q", tt.desc, limit, err, tt.wantErr)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

func TestServeFunctionWithoutCookie(t *testing.T) {
	t.Setenv(rpc.FunctionCookieKey, "")
	var stdout, stderr bytes.Buffer
	code := ServeFunction(testRegistry(), strings.NewReader(request(t, "echo", "1")), &stdout, &stderr)
	if code != ExitProtocol {
		t.Errorf("ServeFunction without the cookie = %d, want %d", code, ExitProtocol)
	}
	if stdout.Len() != 0 {
		t.Errorf("ServeFunction without the cookie wrote %q to stdout, want nothing", stdout.String())
	}
	if !strings.Contains(stderr.String(), "noded") || !strings.Contains(stderr.String(), rpc.FunctionCookieKey) {
		t.Errorf("ServeFunction without the cookie said %q; want it to explain that noded runs it", stderr.String())
	}
}

func TestServeFunctionWithCookie(t *testing.T) {
	t.Setenv(rpc.FunctionCookieKey, rpc.FunctionCookieValue)
	if !IsFunctionProcess() {
		t.Fatal("IsFunctionProcess() = false with the cookie set")
	}
	var stdout, stderr bytes.Buffer
	code := ServeFunction(testRegistry(), strings.NewReader(request(t, "echo", `[1,2]`)), &stdout, &stderr)
	want := fmt.Sprintf("{\"protocol\":%d,\"pid\":%d}\n{\"result\":[1,2]}\n", rpc.ProtocolVersion, os.Getpid())
	if code != ExitSucceeded || stdout.String() != want {
		t.Errorf("ServeFunction(echo [1,2]) = %d, stdout %q; want 0, %q", code, stdout.String(), want)
	}
}

// process is a real function process: the test binary in helper mode,
// started as noded starts a Go function process (noded/functions
// GoProcess): the program, "function" and the function's name as its
// arguments, and the cookie in its environment.
type process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *lineWatcher
}

func startProcess(t *testing.T, fn string, cookie bool, watch string, env ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // generous: a bound, not a clock
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "function", fn)
	// A race-enabled child sleeps a second before exiting 0 unless told
	// not to.
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "GORACE=atexit_sleep_ms=0")
	if cookie {
		cmd.Env = append(cmd.Env, rpc.FunctionCookieKey+"="+rpc.FunctionCookieValue)
	}
	cmd.Env = append(cmd.Env, env...)
	p := &process{cmd: cmd, stderr: newLineWatcher(watch)}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// hello reads and checks the first line.
func (p *process) hello(t *testing.T) rpc.Hello {
	t.Helper()
	line, err := p.stdout.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading hello: %v (stderr %q)", err, p.stderr.String())
	}
	h, err := rpc.DecodeHello(line)
	if err != nil {
		t.Fatalf("DecodeHello(%q): %v", line, err)
	}
	if h.PID != p.cmd.Process.Pid {
		t.Errorf("hello PID %d, want the child's %d", h.PID, p.cmd.Process.Pid)
	}
	return h
}

// finish reads everything after the hello and reaps the process.
func (p *process) finish(t *testing.T) outcome {
	t.Helper()
	rest, err := io.ReadAll(p.stdout)
	if err != nil {
		t.Fatalf("reading stdout: %v", err)
	}
	var o outcome
	var exit *exec.ExitError
	if err := p.cmd.Wait(); errors.As(err, &exit) {
		o.code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("wait: %v", err)
	}
	o.stderr = p.stderr.String()
	if o.result, err = rpc.DecodeFunctionResult(rest); err != nil {
		t.Fatalf("DecodeFunctionResult(%q): %v (stderr %q)", rest, err, o.stderr)
	}
	return o
}

func (p *process) send(t *testing.T, req string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, req); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	if err := p.stdin.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestServeProcess(t *testing.T) {
	for _, tt := range serveCases {
		if tt.fn == "nope" {
			continue // noded refuses it before a process starts
		}
		t.Run(tt.desc, func(t *testing.T) {
			p := startProcess(t, tt.fn, true, "")
			h := p.hello(t)
			p.send(t, request(t, tt.fn, tt.args))
			got := p.finish(t)
			got.hello = h
			checkOutcome(t, tt, got)
		})
	}
}

// TestServeProcessWarm: a process started ahead of its call primes its
// request path before its hello (FunctionWarmKey) and then serves every
// call as a cold one does: the same result, the same exit, the same log,
// nothing of the priming in it.
func TestServeProcessWarm(t *testing.T) {
	for _, tt := range serveCases {
		if tt.fn == "nope" {
			continue // noded refuses it before a process starts
		}
		t.Run(tt.desc, func(t *testing.T) {
			var logs [2]string
			for i, env := range [][]string{nil, {rpc.FunctionWarmKey + "=1"}} {
				p := startProcess(t, tt.fn, true, "", env...)
				h := p.hello(t)
				p.send(t, request(t, tt.fn, tt.args))
				got := p.finish(t)
				got.hello = h
				checkOutcome(t, tt, got)
				logs[i] = got.stderr
			}
			cold, warm := withoutTimes(logs[0]), withoutTimes(logs[1])
			if warm != cold {
				t.Errorf("warm process logged %q, a cold one %q", warm, cold)
			}
		})
	}
}

// varying matches what differs between two processes' logs of the same
// call: the time of each line and the addresses in a stack.
var varying = regexp.MustCompile(`time=\S+|0x[0-9a-f]+`)

// withoutTimes returns a function process's log without what varies from
// process to process.
func withoutTimes(log string) string {
	return varying.ReplaceAllString(log, "")
}

func TestServeProcessUnknownFunction(t *testing.T) {
	// The request names a function this program lacks (a noded and its
	// function binary out of step): the process says so in its frame.
	p := startProcess(t, "echo", true, "")
	h := p.hello(t)
	p.send(t, request(t, "nope", ""))
	got := p.finish(t)
	got.hello = h
	checkOutcome(t, serveCase{fn: "nope", wantCode: 1, wantKind: rpc.KindUnknownFunction, wantMsg: "echo"}, got)
}

func TestServeProcessWithoutCookie(t *testing.T) {
	p := startProcess(t, "echo", false, "")
	p.stdin.Close()
	out, _ := io.ReadAll(p.stdout)
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitProtocol {
		t.Errorf("function process without the cookie: wait = %v, want exit code %d", err, ExitProtocol)
	}
	if len(out) != 0 {
		t.Errorf("function process without the cookie wrote %q to stdout, want nothing", out)
	}
	if !strings.Contains(p.stderr.String(), "Run noded instead") {
		t.Errorf("function process without the cookie said %q; want how it is meant to be run", p.stderr.String())
	}
}

func TestServeProcessSIGTERM(t *testing.T) {
	p := startProcess(t, "sleep", true, "sleeping")
	p.hello(t)
	p.send(t, request(t, "sleep", `{"seconds": 3600}`))
	select {
	case <-p.stderr.seen: // the function is running
	case <-time.After(30 * time.Second):
		t.Fatalf("sleep never logged that it was sleeping; stderr %q", p.stderr.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := p.finish(t)
	if got.code != ExitFailed {
		t.Errorf("sleep after SIGTERM: exit %d, want %d", got.code, ExitFailed)
	}
	e := got.result.Error
	if e == nil || e.Kind != rpc.KindCancelled || !strings.Contains(e.Message, "terminated") {
		t.Errorf("sleep after SIGTERM: error %v, want kind cancelled naming the signal", e)
	}
}

// TestServeProcessSIGTERMBeforeRequest: a process still waiting for its
// request (a warm one, or a cold one noded gave up on) ends at SIGTERM as
// any program does, at once and without a frame.
func TestServeProcessSIGTERMBeforeRequest(t *testing.T) {
	p := startProcess(t, "echo", true, "")
	p.hello(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(p.stdout)
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("SIGTERM before the request: wait = %v, want killed by SIGTERM", err)
	}
	if len(rest) != 0 {
		t.Errorf("SIGTERM before the request: wrote %q, want nothing", rest)
	}
}

// TestServeProcessSIGTERMIgnoredContext: a function that never looks at
// its context is ended by SIGTERM as any program is, instead of running
// on to noded's SIGKILL; one that looks at it gets the cancellation
// (TestServeProcessSIGTERM).
func TestServeProcessSIGTERMIgnoredContext(t *testing.T) {
	p := startProcess(t, "block", true, "blocking")
	p.hello(t)
	p.send(t, request(t, "block", ""))
	select {
	case <-p.stderr.seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("block never logged that it was blocking; stderr %q", p.stderr.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	io.ReadAll(p.stdout)
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("SIGTERM to a function ignoring its context: wait = %v, want killed by SIGTERM", err)
	}
}

func TestServeProcessStdoutIsProtocolOnly(t *testing.T) {
	p := startProcess(t, "print", true, "")
	p.hello(t)
	p.send(t, request(t, "print", ""))
	got := p.finish(t)
	if got.code != 0 || string(got.result.Result) != `"printed"` {
		t.Errorf("print: exit %d, result %s, error %v; want 0, \"printed\"", got.code, got.result.Result, got.result.Error)
	}
	for _, want := range []string{"stray print to stdout", "stray child output"} {
		if !strings.Contains(got.stderr, want) {
			t.Errorf("print: stderr %q does not contain %q", got.stderr, want)
		}
	}
}

// TestServeProcessKeepsStdoutFile: os.Stdout is still the *os.File of
// descriptor 1 once the protocol has its own copy. Replaced, the old one
// was garbage whose finalizer closed descriptor 1 at a collection, and
// the runtime's epoll, opened next, got 1, which the end of the log then
// pointed at /dev/null: a 2 MiB echo in a race build failed so.
func TestServeProcessKeepsStdoutFile(t *testing.T) {
	p := startProcess(t, "stdoutfd", true, "")
	p.hello(t)
	p.send(t, request(t, "stdoutfd", ""))
	got := p.finish(t)
	if got.code != 0 || string(got.result.Result) != "1" {
		t.Errorf("os.Stdout.Fd() in a function = %s (exit %d, error %v), want 1", got.result.Result, got.code, got.result.Error)
	}
}

func TestServeProcessGrandchildDoesNotHoldStdout(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep program")
	}
	p := startProcess(t, "spawn", true, "")
	// stderr is a pipe the grandchild keeps open; let Wait stop copying it
	// once the function process itself has exited.
	p.cmd.WaitDelay = 100 * time.Millisecond
	p.hello(t)
	p.send(t, request(t, "spawn", ""))
	// ReadAll returns only when every holder of the stdout pipe is gone:
	// the grandchild must not be one. It would hold the pipe for its whole
	// minute, so a read still blocked well before then has failed.
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(p.stdout)
		done <- read{b, err}
	}()
	var rest []byte
	select {
	case rd := <-done:
		if rd.err != nil {
			t.Fatal(rd.err)
		}
		rest = rd.b
	case <-time.After(30 * time.Second):
		t.Fatalf("stdout still open 30s after the call: a grandchild holds the protocol pipe (stderr %q)", p.stderr.String())
	}
	res, err := rpc.DecodeFunctionResult(rest)
	if err != nil || res.Error != nil {
		t.Fatalf("spawn: %s, %v", rest, err)
	}
	pid, _ := strconv.Atoi(string(res.Result))
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	p.cmd.Wait()
}
