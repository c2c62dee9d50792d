package wire

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestOwnRequestFastPath: every frame AppendFunctionRequest writes is read
// by the fast path exactly as the strict decoder reads it, and every
// frame laid out otherwise is left to the strict decoder.
func TestOwnRequestFastPath(t *testing.T) {
	strict := func(line []byte) FunctionRequest {
		t.Helper()
		var req FunctionRequest
		if err := UnmarshalStrict(line, &req, IgnoreUnknownFields); err != nil {
			t.Fatalf("strict decode of %q: %v", line, err)
		}
		return req
	}
	for _, tc := range []struct {
		id, name string
		args     json.RawMessage
	}{
		{"1:2:1796160691.141524:d76990ea0e930bf5", "echo", json.RawMessage(`{"bench":"echo","n":[1,2,3]}`)},
		{"1:2:3:4", "node_info", nil},
		{"1:2:3:4", "x", json.RawMessage(`null`)},
		{"", "echo", json.RawMessage(`"a \"quoted\" }\n string"`)},
		{"1:2:3:4", "sleep", json.RawMessage(` { "seconds" : 1 } `)},
		{"1:2:3:4", "echo", json.RawMessage(`[{"}":"{"}]`)},
	} {
		line, err := AppendFunctionRequest(nil, tc.id, tc.name, tc.args)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := parseOwnRequest(line)
		if !ok {
			t.Errorf("fast path refused noded's own frame %q", line)
			continue
		}
		if want := strict(line); !reflect.DeepEqual(fast, want) {
			t.Errorf("frame %q: fast path read %+v, strict decoder %+v", line, fast, want)
		}
		if got, err := DecodeFunctionRequest(line); err != nil || !reflect.DeepEqual(got, fast) {
			t.Errorf("DecodeFunctionRequest(%q) = %+v, %v", line, got, err)
		}
	}
	for _, line := range []string{
		`{"call_id":"a\"b","fn_name":"echo"}` + "\n",                   // an escape
		`{"fn_name":"echo","call_id":"1"}` + "\n",                      // another order
		`{"call_id":"1","fn_name":"echo","fn_args":1,"more":2}` + "\n", // a field added after the args
		`{"call_id":"1","fn_name":"echo","fn_args":1},"x":{}` + "\n",   // args that are not one value
		`{"call_id":"1","fn_name":"echo","fn_args":01}` + "\n",         // args that are not strict
		`{"call_id":"1","fn_name":"é"}` + "\n",                         // not ASCII
		`{"call_id":"1","fn_name":""}` + "\n",                          // no name
		`{"call_id":"1","fn_name":"echo"}`,                             // no newline
		`{"call_id":"1","fn_name":"echo"} ` + "\n",                     // a space
	} {
		if req, ok := parseOwnRequest([]byte(line)); ok {
			t.Errorf("fast path took %q as %+v; it is the strict decoder's", line, req)
		}
	}
}

// TestRequestFrameOfAnyStrings: the frame AppendFunctionRequest writes by
// hand for plain strings is the JSON encoder's, byte for byte, and
// strings that need escaping go through the encoder and read back as
// they were.
func TestRequestFrameOfAnyStrings(t *testing.T) {
	args := json.RawMessage(`{"a":[1,2]}`)
	for _, tc := range []struct{ id, name string }{
		{"1:2:1796160691.141524:d76990ea0e930bf5", "echo"},
		{"", "node_info"},
		{"1:2:3:4", "a b/c.d-e_f"},
	} {
		got, err := AppendFunctionRequest([]byte("x"), tc.id, tc.name, args)
		if err != nil {
			t.Fatal(err)
		}
		head, err := Marshal(FunctionRequest{CallID: tc.id, FnName: tc.name, FnArgs: args})
		if err != nil {
			t.Fatal(err)
		}
		if want := "x" + string(head) + "\n"; string(got) != want {
			t.Errorf("AppendFunctionRequest(%q, %q) = %q, the encoder writes %q", tc.id, tc.name, got, want)
		}
	}
	for _, tc := range []struct{ id, name string }{
		{`1"2`, "echo"},
		{"1:2:3:4", `back\slash`},
		{"1:2:3:4", "é"},
		{"1:2:3:4", "tab\there"},
		{"1:2:3:4", "\x7f"},
	} {
		line, err := AppendFunctionRequest(nil, tc.id, tc.name, args)
		if err != nil {
			t.Fatal(err)
		}
		req, err := DecodeFunctionRequest(line)
		if err != nil || req.CallID != tc.id || req.FnName != tc.name || string(req.FnArgs) != string(args) {
			t.Errorf("AppendFunctionRequest(%q, %q) wrote %q, which reads back as %+v, %v", tc.id, tc.name, line, req, err)
		}
	}
}
