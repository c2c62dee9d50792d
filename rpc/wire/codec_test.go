package wire

import (
	"context"
	"encoding/json"
	"testing"
)

// These tests run with encoding/json, the codec of a function process:
// this package's tests do not link package rpc, which installs go-json.

// TestMarshalKeepsHTMLCharacters: a result of '<', '>' and '&' goes out as
// those bytes, in a value and inside a json.RawMessage, and a raw message
// goes out compact.
func TestMarshalKeepsHTMLCharacters(t *testing.T) {
	got, err := Marshal(struct {
		S string          `json:"s"`
		R json.RawMessage `json:"r"`
	}{"<a&b>", json.RawMessage(`{ "x" : "<&>" }`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"s":"<a&b>","r":{"x":"<&>"}}`; string(got) != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
}

// ctxDecoder decodes itself with go-json's context method only.
type ctxDecoder struct{ got string }

func (d *ctxDecoder) UnmarshalJSON(_ context.Context, b []byte) error {
	d.got = string(b)
	return nil
}

// TestContextDecoderDecodesItself: a type with go-json's
// UnmarshalJSON(context.Context, []byte) is checked for its syntax only,
// as one with encoding/json's method is, though this package does not
// link go-json to name its interface.
func TestContextDecoderDecodesItself(t *testing.T) {
	var v struct {
		D ctxDecoder `json:"d"`
	}
	if err := UnmarshalStrict([]byte(`{"d":{"any":["shape"]}}`), &v, RefuseUnknownFields); err != nil {
		t.Fatalf("a self-decoding field's value was checked against its struct: %v", err)
	}
	if err := UnmarshalStrict([]byte(`{"d":{"a":1,"a":2}}`), &v, RefuseUnknownFields); err == nil {
		t.Error("a duplicate key inside a self-decoding field's value was accepted")
	}
}

// TestStrictDecodeWithStandardLibrary: the strict checks come before the
// codec, whichever it is: a key in the wrong case is refused, a good
// request decodes.
func TestStrictDecodeWithStandardLibrary(t *testing.T) {
	if _, err := DecodeFunctionRequest([]byte(`{"call_id":"1:2:3:4","FN_NAME":"echo"}`)); err == nil {
		t.Error("a key in the wrong case was accepted")
	}
	req, err := DecodeFunctionRequest([]byte(`{"call_id":"1:2:3:4","fn_name":"echo","fn_args":{"n":[1,2]}}`))
	if err != nil || req.FnName != "echo" || string(req.FnArgs) != `{"n":[1,2]}` {
		t.Errorf("DecodeFunctionRequest = %+v, %v", req, err)
	}
}
