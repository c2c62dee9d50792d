package backend

import (
	"bytes"
	"context"
	"io"
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
