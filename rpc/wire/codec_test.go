package wire

import (
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
