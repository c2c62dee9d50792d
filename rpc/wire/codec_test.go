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

// TestClip: a clipped string keeps at most n bytes of its start, never
// half a character, and says it was cut; ClipBytes agrees with Clip.
func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456789..."},
		{"ab€def", 3, "ab..."}, // € is 3 bytes from index 2: not split
		{"ab€def", 5, "ab€..."},
		{"€", 0, "..."},
	} {
		if got := Clip(tc.s, tc.n); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
		if got := ClipBytes([]byte(tc.s), tc.n); got != tc.want {
			t.Errorf("ClipBytes(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
