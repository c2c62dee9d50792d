package backend

import (
	"bytes"
	"context"
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
