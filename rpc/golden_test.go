package rpc

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/goccy/go-json"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCase is one body of the wire: its file in testdata/golden holds
// exactly the bytes on the wire, an HTTP body as noded or the client
// writes it, a stdio frame with the newline that ends it.
type goldenCase struct {
	file  string
	value any // a pointer to the canonical value
	// encode and decode are the wire's own, where it has its own; the
	// default encodes with json.Marshal and decodes strictly.
	encode func() ([]byte, error)
	decode func([]byte) (any, error)
}

func goldenCases() []goldenCase {
	const id = "9980:9990:1795317346.017856:92dd2f59a4f2486d"
	started := time.Date(2026, 11, 22, 3, 15, 46, 17856136, time.UTC)
	finished := started.Add(5709738 * time.Nanosecond)
	one, three := 1.0, 3
	frame := func(v any) func() ([]byte, error) {
		return func() ([]byte, error) {
			b, err := json.Marshal(v)
			return append(b, '\n'), err
		}
	}
	hello := &Hello{Protocol: ProtocolVersion, PID: 9990}
	req := &FunctionRequest{CallID: id, FnName: "echo", FnArgs: json.RawMessage(`{"hello":"node"}`)}
	result := &FunctionResult{Result: json.RawMessage(`{"hello":"node"}`)}
	resultErr := &FunctionResult{Error: &Error{Kind: KindFunctionFailed, Message: "no such file"}}
	return []goldenCase{
		{file: "start_request", value: &StartRequest{FnName: "echo", FnArgs: json.RawMessage(`{"hello":"node"}`), Timeout: 5, AbortAfter: 30, RequestID: "5b6c0d1e-7f80-4a1b-9c2d-3e4f5a6b7c8d", LogOffset: 2, WakeOnLog: true,
			Release: []string{id, "9980:9991:1795317346.020117:0b1c2d3e4f5a6b7c"}}},
		{file: "wait_request", value: &WaitRequest{ID: id, Timeout: 2.5, LogOffset: 4, WakeOnLog: true}},
		{file: "cancel_request", value: &CancelRequest{ID: id, Timeout: &one}},
		{file: "release_request", value: &IDRequest{ID: id}},
		{file: "release_response", value: &ReleaseResponse{ID: id, Released: true}},
		{file: "call_running", value: &Call{ID: id, FnName: "sleep", State: StateRunning, Log: []string{"sleeping 10s"}, LogOffset: 1, StartedAt: started}},
		{file: "call_succeeded", value: &Call{ID: id, FnName: "echo", Finished: true, State: StateSucceeded, Result: json.RawMessage(`{"hello":"node"}`),
			Log: []string{"line 3"}, LogOffset: 3, LogDropped: 2, RequestID: "r-1", StartedAt: started, FinishedAt: &finished}},
		{file: "call_failed", value: &Call{ID: id, FnName: "fail", Finished: true, State: StateFailed,
			Error: &Error{Kind: KindFunctionFailed, Message: "exit status 3", ExitCode: &three}, Log: []string{}, LogOffset: 0, StartedAt: started, FinishedAt: &finished}},
		{file: "call_aborted", value: &Call{ID: id, FnName: "sleep", Finished: true, State: StateAborted,
			Error: &Error{Kind: KindAborted, Message: "ran longer than abort_after 2s", Signal: "SIGKILL"}, Log: []string{}, StartedAt: started, FinishedAt: &finished}},
		{file: "list_functions_response", value: &ListFunctionsResponse{Functions: []Function{
			{Name: "deploy.sh", Kind: FunctionExecutable, Runnable: true},
			{Name: "echo", Kind: FunctionBuiltin, Runnable: true},
			{Name: "hello", Kind: FunctionGo, Runnable: true},
			{Name: "notes.txt", Kind: FunctionExecutable, Problem: "/usr/local/lib/noded/functions/notes.txt is not executable (mode -rw-r--r--; chmod +x it to make it a function)"},
		}, FunctionsDir: "/usr/local/lib/noded/functions", Calls: CallsMoved}},
		{file: "list_calls_response", value: &ListCallsResponse{Calls: []CallSummary{
			{ID: id, FnName: "sleep", State: StateRunning, StartedAt: started},
			{ID: id, FnName: "fail", State: StateFailed, RequestID: "r-2", StartedAt: started, FinishedAt: &finished, ErrorKind: KindFunctionFailed},
		}}},
		{file: "version_response", value: &VersionResponse{Version: "1.2.3", Protocol: ProtocolVersion, BootID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", StartedAt: started, PID: 9980}},
		{file: "error_response", value: &ErrorResponse{Error: &Error{Kind: KindUnknownFunction, Message: `no function "nope"`}}},
		{file: "hello", value: hello, encode: frame(hello),
			decode: func(b []byte) (any, error) { h, err := DecodeHello(b); return &h, err }},
		{file: "function_request", value: req,
			encode: func() ([]byte, error) { return AppendFunctionRequest(nil, req.CallID, req.FnName, req.FnArgs) },
			decode: func(b []byte) (any, error) { r, err := DecodeFunctionRequest(b); return &r, err }},
		{file: "function_result", value: result, encode: frame(result),
			decode: func(b []byte) (any, error) { r, err := DecodeFunctionResult(b); return &r, err }},
		{file: "function_result_error", value: resultErr, encode: frame(resultErr),
			decode: func(b []byte) (any, error) { r, err := DecodeFunctionResult(b); return &r, err }},
	}
}

// TestGolden holds every body of the wire to its golden file both ways,
// so that renaming a JSON tag, or changing how a value is written, fails
// here before it reaches a peer. go test ./rpc -run Golden -update
// rewrites the files.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		path := filepath.Join("testdata", "golden", tc.file+".json")
		encode := tc.encode
		if encode == nil {
			encode = func() ([]byte, error) { return json.Marshal(tc.value) }
		}
		got, err := encode()
		if err != nil {
			t.Fatalf("%s: encoding %+v: %v", tc.file, tc.value, err)
		}
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (go test ./rpc -run Golden -update writes it)", tc.file, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoding gives\n\t%s\nwant (%s)\n\t%s", tc.file, got, path, want)
		}
		decode := tc.decode
		if decode == nil {
			decode = func(b []byte) (any, error) {
				v := reflect.New(reflect.TypeOf(tc.value).Elem()).Interface()
				return v, UnmarshalStrict(b, v, RefuseUnknownFields)
			}
		}
		back, err := decode(want)
		if err != nil {
			t.Errorf("%s: decoding %s: %v", tc.file, path, err)
			continue
		}
		if !reflect.DeepEqual(back, tc.value) {
			t.Errorf("%s: %s decodes to\n\t%+v\nwant\n\t%+v", tc.file, path, back, tc.value)
		}
	}
}

// TestGoldenCoversEveryField makes a field added to a wire type show up
// in some golden file: each field of each rpc struct reachable from the
// cases is set in at least one canonical value.
func TestGoldenCoversEveryField(t *testing.T) {
	set, all := map[string]bool{}, map[string]bool{}
	for _, tc := range goldenCases() {
		markSet(reflect.ValueOf(tc.value), set)
		listFields(reflect.TypeOf(tc.value), all)
	}
	for f := range all {
		if !set[f] {
			t.Errorf("no golden file sets %s", f)
		}
	}
}

var rpcPath = reflect.TypeFor[Call]().PkgPath()

func markSet(v reflect.Value, set map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			markSet(v.Elem(), set)
		}
	case reflect.Slice:
		for i := range v.Len() {
			markSet(v.Index(i), set)
		}
	case reflect.Struct:
		if v.Type().PkgPath() != rpcPath {
			return
		}
		for i := range v.NumField() {
			if !v.Field(i).IsZero() {
				set[v.Type().Name()+"."+v.Type().Field(i).Name] = true
			}
			markSet(v.Field(i), set)
		}
	}
}

func listFields(t reflect.Type, all map[string]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		listFields(t.Elem(), all)
	case reflect.Struct:
		if t.PkgPath() != rpcPath {
			return
		}
		for i := range t.NumField() {
			all[t.Name()+"."+t.Field(i).Name] = true
			listFields(t.Field(i).Type, all)
		}
	}
}

// TestListFunctionsAcrossProtocols: GET /ListFunctions listed calls in
// protocol 1. Each side meeting the other's answer fails loudly instead
// of reading an empty list: a master of protocol 1 reading this
// protocol's answer, and this master reading a node of protocol 1.
func TestListFunctionsAcrossProtocols(t *testing.T) {
	now, err := os.ReadFile(filepath.Join("testdata", "golden", "list_functions_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v1 struct { // what a master of protocol 1 decoded the answer into
		Calls []CallSummary `json:"calls"`
	}
	if err := UnmarshalStrict(now, &v1, IgnoreUnknownFields); err == nil {
		t.Errorf("a master of protocol 1 reads %s as the calls %+v, want a decoding error", now, v1.Calls)
	}
	old, err := os.ReadFile(filepath.Join("testdata", "golden", "list_calls_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fns ListFunctionsResponse
	if err := UnmarshalStrict(old, &fns, IgnoreUnknownFields); err == nil {
		t.Errorf("the answer of a node of protocol 1, %s, reads as the functions %+v, want a decoding error", old, fns)
	}
}
