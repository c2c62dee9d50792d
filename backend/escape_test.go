package backend

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// A result goes out as the function made it: '<', '>' and '&' stay
// themselves in the result frame, where go-json's default would write
// each as six bytes.
func TestResultFrameKeepsHTMLCharacters(t *testing.T) {
	reg := NewRegistry()
	RegisterBuiltins(reg)
	args := json.RawMessage(`{"html":"<a href=\"x\">&amp;</a>"}`)
	res := call(context.Background(), reg, rpc.FunctionRequest{CallID: "1:2:3.000004:5", FnName: "echo", FnArgs: args}, io.Discard)
	var frame bytes.Buffer
	if err := writeFrame(&frame, res); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(frame.Bytes(), args) {
		t.Errorf("result frame of echo %s = %s, want the arguments' bytes unchanged", args, frame.Bytes())
	}
}

// The frames written by hand are the bytes wire.Marshal writes.
func TestHandWrittenFramesAreMarshal(t *testing.T) {
	for _, v := range []any{
		rpc.Hello{Protocol: rpc.ProtocolVersion, PID: 12345},
		rpc.FunctionResult{Result: json.RawMessage(`{"a":[1,"<&>"],"b":null}`)},
		rpc.FunctionResult{Result: json.RawMessage(`null`)},
		rpc.FunctionResult{Error: rpc.Errorf(rpc.KindFunctionFailed, "no")},
	} {
		var got bytes.Buffer
		if err := writeFrame(&got, v); err != nil {
			t.Fatal(err)
		}
		want, err := rpc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want)+"\n" {
			t.Errorf("frame of %#v = %q, want %q", v, got.String(), want)
		}
	}
}

// A result whose raw JSON (a json.RawMessage, at any depth) is not
// valid fails the call as the function's, with why, in a frame noded
// can read: go-json copies raw JSON without checking its escapes.
func TestResultOfInvalidRawJSON(t *testing.T) {
	for _, raw := range []string{`"\0"`, "\"\xff\"", `01`} {
		reg := NewRegistry()
		reg.Register("f", func(context.Context, json.RawMessage) (any, error) {
			return map[string]any{"a": json.RawMessage(raw)}, nil
		})
		res := call(context.Background(), reg, rpc.FunctionRequest{CallID: "1:2:3.000004:5", FnName: "f"}, io.Discard)
		var frame bytes.Buffer
		if err := writeFrame(&frame, res); err != nil {
			t.Fatal(err)
		}
		got, err := rpc.DecodeFunctionResult(frame.Bytes())
		if err != nil || got.Error == nil || got.Error.Kind != rpc.KindFunctionFailed || !strings.Contains(got.Error.Message, "cannot be encoded as JSON") {
			t.Errorf("frame of a result holding raw JSON %q = %q (%v), want a function_failed error saying why", raw, frame.Bytes(), err)
		}
	}
}

// A json.RawMessage result is encoded without the JSON library, into the
// bytes encoding/json (the function process's library, without HTML
// escaping) writes for it; invalid raw JSON still fails the call.
func TestRawMessageResultIsWhatEncodingJSONWrites(t *testing.T) {
	for _, raw := range []string{
		`{"a":1}`,
		" {\n  \"a\": [1, 2.5e3, \"x y\"],\t\"b\": null\r\n} ",
		`"<a href=\"x\">&amp;</a>"`,
		"\"\u2028\u2029 é \\u00e9\"",
		`null`,
		`[]`,
	} {
		got, err := encodeResult(stdjson.RawMessage(raw))
		if err != nil {
			t.Errorf("encoding the raw result %q: %v", raw, err)
			continue
		}
		var want bytes.Buffer
		enc := stdjson.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(stdjson.RawMessage(raw)); err != nil {
			t.Fatal(err)
		}
		if string(got)+"\n" != want.String() {
			t.Errorf("raw result %q encoded as %q, encoding/json writes %q", raw, got, want.String())
		}
	}
	for _, raw := range []string{`"\0"`, "\"\xff\"", `01`, `{"a":1} x`, ``} {
		if b, err := encodeResult(stdjson.RawMessage(raw)); err == nil {
			t.Errorf("the invalid raw result %q was encoded as %q", raw, b)
		}
	}
}

// compact writes what json.Compact writes, for any valid JSON.
func FuzzCompact(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`,
		" {\n  \"a\": [1, 2.5e3, \"x y\"],\t\"b\": null\r\n} ",
		`"a \" b \\" `,
		`[ "\\", " ", "\\\" ]" , {} ]`,
		"\"\u2028 é\"",
		` true `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !stdjson.Valid(data) || rpc.CheckJSON(data) != nil {
			return
		}
		var want bytes.Buffer
		if err := stdjson.Compact(&want, data); err != nil {
			t.Fatal(err)
		}
		if got := compact(data); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("compact(%q) = %q, json.Compact writes %q", data, got, want.Bytes())
		}
	})
}
