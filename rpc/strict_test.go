package rpc

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/goccy/go-json"
)

// panicBody made go-json's stream decoder index past its 1 KiB buffer: an
// unterminated string with a \b escape and invalid UTF-8 across the
// buffer's end.
var panicBody = "{\"fn_name\":\"echo\",\"timeout\":5,  \"request_id\":\"0000\\b" +
	strings.Repeat("0", 183) + strings.Repeat("\xd2", 275) + "0"

// TestDecodeStrictness runs each rule of strict.go through Decode, as
// noded decodes a start: want is "" for a body that decodes, otherwise
// the message of the bad_request error (the part after "malformed
// request: ").
func TestDecodeStrictness(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"plain", `{"fn_name":"echo","timeout":1}`, ""},
		{"JSON whitespace around", " \t\r\n{\"fn_name\":\"echo\",\"timeout\":0}\n ", ""},
		{"every value in fn_args", `{"fn_name":"x","timeout":0,"fn_args":[0,-0,1.5e-3,1E+5,-2.25,"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","é😀",true,false,null,{},[]]}`, ""},
		{"null for a field", `{"fn_name":"x","timeout":0,"abort_after":null}`, ""},
		{"go-json stream decoder panic", panicBody, "request_id: invalid UTF-8 in a string (at byte 235)"},

		// Syntax.
		{"leading zero", `{"fn_name":"x","fn_args":{"a":01}}`, "fn_args: leading zero in a number (at byte 31)"},
		{"no digit after the point", `{"fn_name":"x","fn_args":1.}`, "fn_args: want a digit after the decimal point (at byte 27)"},
		{"no digit in the exponent", `{"fn_name":"x","fn_args":1e+}`, "fn_args: want a digit in the exponent (at byte 28)"},
		{"minus alone", `{"fn_name":"x","fn_args":-}`, "fn_args: want a digit in a number (at byte 26)"},
		{"point first", `{"fn_name":"x","fn_args":.5}`, "fn_args: invalid character '.', want a value (at byte 25)"},
		{"plus sign", `{"fn_name":"x","fn_args":+1}`, "fn_args: invalid character '+', want a value (at byte 25)"},
		{"hex", `{"fn_name":"x","fn_args":0x1}`, "invalid character 'x' after an object member, want ',' or '}' (at byte 26)"},
		{"NaN", `{"fn_name":"x","fn_args":NaN}`, "fn_args: invalid character 'N', want a value (at byte 25)"},
		{"literal in capitals", `{"fn_name":"x","fn_args":True}`, "fn_args: invalid character 'T', want a value (at byte 25)"},
		{"literal cut short", `{"fn_name":"x","fn_args":nul}`, "fn_args: invalid literal, want null (at byte 25)"},
		{"raw newline in a string", "{\"fn_name\":\"a\nb\"}", "fn_name: control character 0x0a in a string: it must be escaped (at byte 13)"},
		{"raw tab in a string", "{\"fn_name\":\"a\tb\"}", "fn_name: control character 0x09 in a string: it must be escaped (at byte 13)"},
		{"invalid UTF-8", "{\"fn_name\":\"\xff\"}", "fn_name: invalid UTF-8 in a string (at byte 12)"},
		{"UTF-8 of a surrogate", "{\"fn_name\":\"\xed\xa0\x80\"}", "fn_name: invalid UTF-8 in a string (at byte 12)"},
		{"overlong UTF-8", "{\"fn_name\":\"\xc0\xaf\"}", "fn_name: invalid UTF-8 in a string (at byte 12)"},
		{"invalid UTF-8 outside strings", "{\"fn_name\":\"x\"\xff}", "invalid byte 0xff after an object member, want ',' or '}' (at byte 14)"},
		{"unknown escape", `{"fn_name":"\x41"}`, `fn_name: invalid escape "\\x" in a string (at byte 12)`},
		{"short \\u escape", `{"fn_name":"\u41"}`, `fn_name: invalid \u escape in a string: want four hex digits (at byte 12)`},
		{"lone high surrogate", `{"fn_name":"\ud800"}`, `fn_name: lone UTF-16 surrogate \ud800 in a string (at byte 12)`},
		{"lone low surrogate", `{"fn_name":"\udc00\ud800"}`, `fn_name: lone UTF-16 surrogate \udc00 in a string (at byte 12)`},
		{"high surrogate before a letter", `{"fn_name":"\ud800\u0041"}`, `fn_name: lone UTF-16 surrogate \ud800 in a string (at byte 12)`},
		{"unterminated string", `{"fn_name":"echo`, "fn_name: unterminated string (at byte 11)"},
		{"trailing comma in an array", `{"fn_name":"x","fn_args":[1,]}`, "fn_args: invalid character ']', want a value (at byte 28)"},
		{"trailing comma in an object", `{"fn_name":"x",}`, "invalid character '}', want an object key (a string) (at byte 15)"},
		{"key not a string", `{fn_name:"x"}`, "invalid character 'f', want an object key (a string) (at byte 1)"},
		{"missing colon", `{"fn_name" "x"}`, "want ':' after the object key (at byte 11)"},
		{"object cut short", `{"fn_name":"echo"`, "unexpected end of input after an object member, want ',' or '}' (at byte 17)"},
		{"second object", `{"fn_name":"echo","timeout":0} {}`, "invalid character '{' after the JSON value (at byte 31)"},
		{"trailing NUL", "{\"fn_name\":\"echo\",\"timeout\":0}\x00", "invalid byte 0x00 after the JSON value (at byte 30)"},
		{"vertical tab is no whitespace", "\v{\"fn_name\":\"echo\"}", "invalid byte 0x0b, want a value (at byte 0)"},
		{"no-break space is no whitespace", "{\"fn_name\":\"echo\",\"timeout\":0}\u00a0", "invalid byte 0xc2 after the JSON value (at byte 30)"},
		{"timeout missing", `{"fn_name":"echo"}`, `missing "timeout", which is required (at byte 17)`},
		{"timeout missing from an empty object", `{}`, `missing "timeout", which is required (at byte 1)`},
		{"timeout null", `{"fn_name":"sleep","timeout":null}`, `timeout: null is not a value: this field is required (at byte 29)`},

		// Keys.
		{"duplicate key", `{"fn_name":"echo","fn_name":"sleep"}`, `duplicate key "fn_name" (at byte 18)`},
		{"duplicate key escaped", `{"fn_name":"echo","fn_n\u0061me":"sleep"}`, `duplicate key "fn_name" (at byte 18)`},
		{"duplicate key in fn_args", `{"fn_name":"x","fn_args":[{"a":1,"b":{"c":1,"c":2}}]}`, `fn_args: duplicate key "c" (at byte 44)`},
		{"same key in sibling objects", `{"fn_name":"x","timeout":0,"fn_args":[{"a":1},{"a":1}]}`, ""},
		{"key in capitals", `{"FN_NAME":"echo"}`, `key "FN_NAME" is not "fn_name": keys are case-sensitive (at byte 1)`},
		{"key in mixed case", `{"fn_name":"x","Timeout":1}`, `key "Timeout" is not "timeout": keys are case-sensitive (at byte 15)`},
		{"escaped key in capitals", `{"fn_n\u0041me":"x"}`, `key "fn_nAme" is not "fn_name": keys are case-sensitive (at byte 1)`},
		{"unknown field", `{"fn_name":"x","bogus":1}`, `unknown field "bogus" (at byte 15)`},
		{"keys of fn_args are free", `{"fn_name":"x","timeout":0,"fn_args":{"FN_NAME":1,"bogus":2}}`, ""},

		// Types.
		{"timeout as a string", `{"timeout":"5"}`, "timeout: want a number of seconds, got the string \"5\"; write the number without quotes: 5 (at byte 11)"},
		{"timeout as a duration", `{"timeout":"1m30s"}`, "timeout: want a number of seconds, got the string \"1m30s\"; write a number of seconds without quotes: 90 (at byte 11)"},
		{"timeout as words", `{"timeout":"soon"}`, "timeout: want a number of seconds, got the string \"soon\" (at byte 11)"},
		{"abort_after as true", `{"fn_name":"x","abort_after":true}`, "abort_after: want a number of seconds, got true (at byte 29)"},
		{"fn_name as a number", `{"fn_name":1}`, "fn_name: want a string, got a number (at byte 11)"},
		{"release as a string", `{"fn_name":"x","timeout":0,"release":"1:2:1700000000.000001:0123456789abcdef"}`, `release: want an array, got the string "1:2:1700000000.000001:0123456789abcdef" (at byte 37)`},
		{"release of numbers", `{"fn_name":"x","timeout":0,"release":[1]}`, "release[0]: want a string, got a number (at byte 38)"},
		{"release empty", `{"fn_name":"x","timeout":0,"release":[]}`, ""},
		{"log_offset with a fraction", `{"fn_name":"x","log_offset":1.5}`, "log_offset: want an integer, got 1.5 (at byte 28)"},
		{"log_offset with an exponent", `{"fn_name":"x","log_offset":1e2}`, "log_offset: want an integer, got 1e2 (at byte 28)"},
		{"log_offset too big", `{"fn_name":"x","log_offset":99999999999999999999}`, "log_offset: 99999999999999999999 is out of range for an integer (at byte 28)"},
		{"timeout too big", `{"fn_name":"x","timeout":1e400}`, "timeout: 1e400 is out of range for a number of seconds (at byte 25)"},
		{"array for the request", `[]`, "want an object, got an array (at byte 0)"},

		// Numbers of any value beyond a float64 (I-JSON): go-json takes
		// them into a json.RawMessage and cannot encode them again.
		{"huge number in fn_args", `{"fn_name":"x","timeout":0,"fn_args":{"a":[1,2,1e400]}}`, "fn_args: the number 1e400 is beyond the range of a 64-bit float (at byte 47)"},
		{"huge negative number in fn_args", `{"fn_name":"x","timeout":0,"fn_args":-1.8e308}`, "fn_args: the number -1.8e308 is beyond the range of a 64-bit float (at byte 37)"},
		{"huge number without an exponent", `{"fn_name":"x","timeout":0,"fn_args":` + strings.Repeat("9", 309) + `}`, "fn_args: the number " + strings.Repeat("9", 40) + "... (309 digits) is beyond the range of a 64-bit float (at byte 37)"},
		{"largest float64", `{"fn_name":"x","timeout":0,"fn_args":[1.7976931348623157e308,-1.7976931348623157e308]}`, ""},
		{"308 digits", `{"fn_name":"x","timeout":0,"fn_args":` + strings.Repeat("9", 308) + `}`, ""},
		{"long but small", `{"fn_name":"x","timeout":0,"fn_args":0.` + strings.Repeat("1", 400) + `}`, ""},
		{"underflow is zero, not refused", `{"fn_name":"x","timeout":0,"fn_args":[1e-400,0e999999]}`, ""},
	}
	for _, tt := range tests {
		var req StartRequest
		err := Decode([]byte(tt.body), &req)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Decode(%q) = %v, want no error", tt.name, tt.body, err)
		case tt.want == "":
		case !errors.Is(err, ErrBadRequest):
			t.Errorf("%s: Decode(%q) = %v, want a bad_request error", tt.name, tt.body, err)
		case err.(*Error).Message != "malformed request: "+tt.want:
			t.Errorf("%s: Decode(%q) = %q,\n\twant %q", tt.name, tt.body, err.(*Error).Message, "malformed request: "+tt.want)
		}
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, body := range []string{"", " \r\n\t"} {
		var req StartRequest
		err := Decode([]byte(body), &req)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "empty request body") {
			t.Errorf("Decode(%q) = %v, want bad_request: empty request body", body, err)
		}
	}
}

func TestDecodedValues(t *testing.T) {
	body := `{"fn_name":"\u0065cho","fn_args":{"k":["\ud83d\ude00",1]},"timeout":2.5,"request_id":"r","log_offset":3}`
	var got StartRequest
	if err := Decode([]byte(body), &got); err != nil {
		t.Fatalf("Decode(%s): %v", body, err)
	}
	want := StartRequest{FnName: "echo", FnArgs: json.RawMessage(`{"k":["\ud83d\ude00",1]}`), Timeout: 2.5, RequestID: "r", LogOffset: 3}
	if !sameJSON(t, got, want) {
		t.Errorf("Decode(%s) = %+v, want %+v", body, got, want)
	}
}

func TestNestingDepth(t *testing.T) {
	nest := func(n int) []byte {
		return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	if err := CheckJSON(nest(maxDepth)); err != nil {
		t.Errorf("CheckJSON of %d nested arrays: %v, want no error", maxDepth, err)
	}
	err := CheckJSON(nest(maxDepth + 1))
	var jerr *JSONError
	if !errors.As(err, &jerr) || jerr.Offset != maxDepth || !strings.Contains(jerr.Problem, "nested deeper than 1000") {
		t.Errorf("CheckJSON of %d nested arrays = %v, want a nesting error at byte %d", maxDepth+1, err, maxDepth)
	}
	// The depth is the whole body's: a request's object counts.
	var req StartRequest
	body := []byte(`{"fn_name":"x","fn_args":` + string(nest(maxDepth)) + `}`)
	if err := Decode(body, &req); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Decode of fn_args nested %d deep in a request = %v, want bad_request", maxDepth, err)
	}
}

func TestManyKeys(t *testing.T) {
	// Past linearKeys the duplicates are found in a map; both ways must
	// find one wherever it is.
	for _, n := range []int{linearKeys - 1, linearKeys, linearKeys + 1, 3 * linearKeys} {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
		}
		unique := b.String() + "}"
		if err := CheckJSON([]byte(unique)); err != nil {
			t.Errorf("CheckJSON of %d distinct keys: %v", n, err)
		}
		for _, dup := range []string{`"k":2`, `"k` + strings.Repeat("x", n-1) + `":2`, `"\u006b":2`} {
			body := b.String() + "," + dup + "}"
			if err := CheckJSON([]byte(body)); err == nil || !strings.Contains(err.Error(), "duplicate key") {
				t.Errorf("CheckJSON of %d keys and then %s = %v, want a duplicate key", n, dup, err)
			}
		}
	}
}

func TestIgnoreUnknownFields(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"new fields at any depth", `{"id":"a","state":"failed","error":{"kind":"x","message":"m","retry_in":[1,{"a":2}]},"new":{"b":null}}`, ""},
		{"still strict syntax", `{"id":"a","new":01}`, "leading zero in a number (at byte 17)"},
		{"still no duplicates", `{"id":"a","new":{"b":1,"b":2}}`, `duplicate key "b" (at byte 23)`},
		{"still case-sensitive", `{"ID":"a"}`, `key "ID" is not "id": keys are case-sensitive (at byte 1)`},
		{"still typed", `{"id":"a","error":{"exit_code":"3"}}`, "error.exit_code: want an integer, got the string \"3\"; write the number without quotes: 3 (at byte 31)"},
		{"typed inside arrays", `{"log":["a",2]}`, "log[1]: want a string, got a number (at byte 12)"},
	}
	for _, tt := range tests {
		var c Call
		err := UnmarshalStrict([]byte(tt.body), &c, IgnoreUnknownFields)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: UnmarshalStrict(%s) = %v, want no error", tt.name, tt.body, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%s: UnmarshalStrict(%s) = %v, want %q", tt.name, tt.body, err, tt.want)
		}
	}
	var list ListCallsResponse
	body := `{"calls":[{"id":"a","state":"running","started_at":"2026-01-02T03:04:05Z"},{"id":"b","error_kind":7}]}`
	err := UnmarshalStrict([]byte(body), &list, IgnoreUnknownFields)
	if want := "calls[1].error_kind: want a string, got a number (at byte 98)"; err == nil || err.Error() != want {
		t.Errorf("UnmarshalStrict(%s) = %v, want %q", body, err, want)
	}
}

// panicky panics when decoded, as a bug of go-json would.
type panicky struct{}

func (*panicky) UnmarshalJSON([]byte) error { panic("decoder bug") }

func TestDecoderPanicIsAnError(t *testing.T) {
	var v struct {
		P panicky `json:"p"`
	}
	err := UnmarshalStrict([]byte(`{"p":1}`), &v, RefuseUnknownFields)
	var jerr *JSONError
	if !errors.As(err, &jerr) || !strings.Contains(jerr.Problem, "decoder bug") {
		t.Errorf("UnmarshalStrict into a panicking decoder = %v, want a *JSONError that quotes the panic", err)
	}
}

func TestUnmarshalStrictNeedsAPointer(t *testing.T) {
	var req StartRequest
	for _, v := range []any{req, (*StartRequest)(nil), nil} {
		if err := UnmarshalStrict([]byte(`{}`), v, RefuseUnknownFields); err == nil {
			t.Errorf("UnmarshalStrict into %T = nil, want an error", v)
		}
	}
}

// TestShapes runs the rules of encoding/json's struct fields that shapes
// follow: tags, "-", ",string", embedded structs, maps, byte slices.
func TestShapes(t *testing.T) {
	type Inner struct {
		A int    `json:"a"`
		B string // untagged: its Go name
	}
	type outer struct {
		Inner
		*Deep      `json:"deep"`
		C          int            `json:"-"`
		D          int            `json:"d,string"`
		M          map[string]int `json:"m"`
		Bytes      []byte         `json:"bytes"`
		Any        any            `json:"any"`
		unexported int
	}
	tests := []struct {
		body, want string
	}{
		{`{"a":1,"B":"x","deep":{"e":1},"d":"5","m":{"k":1},"bytes":"AQI=","any":[{"Z":1}]}`, ""},
		{`{"b":"x"}`, `key "b" is not "B": keys are case-sensitive (at byte 1)`},
		{`{"C":1}`, `unknown field "C" (at byte 1)`},
		{`{"-":1}`, `unknown field "-" (at byte 1)`},
		{`{"unexported":1}`, `unknown field "unexported" (at byte 1)`},
		{`{"d":5}`, "d: want a string, got a number (at byte 5)"},
		{`{"m":{"k":"v"}}`, `m["k"]: want an integer, got the string "v" (at byte 10)`},
		{`{"bytes":[1,2]}`, "bytes: want a base64 string, got an array (at byte 9)"},
		{`{"deep":{"f":1}}`, `deep: unknown field "f" (at byte 9)`},
		{`{"a":-1,"deep":{"e":-1}}`, "deep.e: want an integer >= 0, got -1 (at byte 20)"},
	}
	for _, tt := range tests {
		var v outer
		err := UnmarshalStrict([]byte(tt.body), &v, RefuseUnknownFields)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("UnmarshalStrict(%s) = %v, want no error", tt.body, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("UnmarshalStrict(%s) = %v, want %q", tt.body, err, tt.want)
		}
	}
}

// Deep is embedded with a tag, so it is one field, not promoted ones.
type Deep struct {
	E uint8 `json:"e"`
}

// TestRecursiveType checks that the shape of a type that holds itself is
// built once and checks every level.
func TestRecursiveType(t *testing.T) {
	type tree struct {
		Kids []tree `json:"kids"`
		N    int    `json:"n"`
	}
	var v tree
	body := `{"kids":[{"kids":[{"n":"x"}]}]}`
	err := UnmarshalStrict([]byte(body), &v, RefuseUnknownFields)
	if want := "kids[0].kids[0].n: want an integer, got the string \"x\" (at byte 23)"; err == nil || err.Error() != want {
		t.Errorf("UnmarshalStrict(%s) = %v, want %q", body, err, want)
	}
}

func TestFramesAreStrict(t *testing.T) {
	for _, line := range []string{
		`{"protocol":1,"pid":2,"pid":3}`,
		`{"protocol":1,"PID":2}`,
		`{"protocol":1,"pid":2,"x":1}`,
		`{"protocol":"1"}`,
		"{\"protocol\":1}\x00",
	} {
		if _, err := DecodeHello([]byte(line)); !errors.Is(err, ErrProtocolError) {
			t.Errorf("DecodeHello(%q) = %v, want protocol_error", line, err)
		}
	}
	for _, out := range []string{
		`{"result":{"a":1,"a":2}}`,
		`{"Result":1}`,
		"{\"result\":\"\xff\"}",
		`{"result":"\udfff"}`,
		`{"error":{"kind":"x","exit_code":1.5}}`,
		`{"result":{"n":1e400}}`,
	} {
		if _, err := DecodeFunctionResult([]byte(out)); !errors.Is(err, ErrProtocolError) {
			t.Errorf("DecodeFunctionResult(%q) = %v, want protocol_error", out, err)
		}
	}
	for _, raw := range []string{`{"a":1,"a":2}`, "\"\xff\"", `01`, `1 2`, ``, `[1,]`, `{"n":1e400}`, `-1E+309`} {
		if err := ValidResult([]byte(raw)); !errors.Is(err, ErrProtocolError) {
			t.Errorf("ValidResult(%q) = %v, want protocol_error", raw, err)
		}
	}
	for _, raw := range []string{`{"a":1}`, " null\n", `"\ud83d\ude00"`} {
		if err := ValidResult([]byte(raw)); err != nil {
			t.Errorf("ValidResult(%q) = %v, want no error", raw, err)
		}
	}
}

func TestDecodeFunctionRequest(t *testing.T) {
	tests := []struct {
		line string
		want FunctionRequest
		err  string // a part of the protocol_error's message; "" for none
	}{
		{`{"call_id":"c","fn_name":"echo","fn_args":{"a":[1]}}` + "\n", FunctionRequest{CallID: "c", FnName: "echo", FnArgs: json.RawMessage(`{"a":[1]}`)}, ""},
		{`{"call_id":"c","fn_name":"echo","added_later":{"x":1}}`, FunctionRequest{CallID: "c", FnName: "echo"}, ""},
		{``, FunctionRequest{}, "stdin closed without a request"},
		{`{"call_id":"c"}`, FunctionRequest{}, "has no fn_name"},
		{`{"fn_name":"echo"} {"fn_name":"echo"}`, FunctionRequest{}, "after the JSON value"},
		{`{"fn_name":"echo","fn_name":"sleep"}`, FunctionRequest{}, `duplicate key "fn_name"`},
		{`{"FN_NAME":"sleep","fn_name":"echo"}`, FunctionRequest{}, "keys are case-sensitive"},
	}
	for _, tt := range tests {
		got, err := DecodeFunctionRequest([]byte(tt.line))
		if tt.err != "" {
			if !errors.Is(err, ErrProtocolError) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("DecodeFunctionRequest(%q) = %v, want a protocol_error saying %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil || !sameJSON(t, got, tt.want) {
			t.Errorf("DecodeFunctionRequest(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

// Marshal writes a result as the function wrote it: go-json would escape
// '<', '>' and '&' even inside a json.RawMessage.
func TestMarshalKeepsResultBytes(t *testing.T) {
	result := `{"html":"<a href=\"x\">&amp;</a>"}`
	got, err := Marshal(&Call{ID: "1:2:3.000004:5", Result: json.RawMessage(result)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(result)) {
		t.Errorf("Marshal of a call with result %s = %s, want the result's bytes unchanged", result, got)
	}
}

// A string decoded from a large input is a copy of its own: go-json makes
// strings views of its copy of the whole input, so an ID kept from a
// large answer kept the answer, its result included, alive with it.
func TestDecodedStringsDoNotPinALargeInput(t *testing.T) {
	const size = 4 << 20
	type record struct {
		ID     string          `json:"id"`
		Tags   []string        `json:"tags"`
		Meta   map[string]any  `json:"meta"`
		Result json.RawMessage `json:"result"`
	}
	var kept []string
	var metas []any
	before := liveHeap()
	for i := 0; i < 4; i++ {
		in := []byte(`{"id":"1:2:3.000004:5","tags":["a","b"],"meta":{"k":"v","n":["w"]},"result":"` + strings.Repeat("x", size) + `"}`)
		var r record
		if err := UnmarshalStrict(in, &r, RefuseUnknownFields); err != nil {
			t.Fatal(err)
		}
		if r.ID != "1:2:3.000004:5" || r.Tags[1] != "b" || r.Meta["k"] != "v" || r.Meta["n"].([]any)[0] != "w" {
			t.Fatalf("decoded %+v", r)
		}
		kept = append(kept, r.ID, r.Tags[0])
		metas = append(metas, r.Meta)
	}
	if grew := int64(liveHeap()) - int64(before); grew > size/2 {
		t.Errorf("keeping strings decoded from 4 inputs of %d bytes kept %d bytes alive, want them copies of their own", size, grew)
	}
	runtime.KeepAlive(kept)
	runtime.KeepAlive(metas)
}

// liveHeap is the heap's live bytes after two collections.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
