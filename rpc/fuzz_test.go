package rpc

// Fuzz tests of everything noded decodes from outside: request bodies
// from the network, call IDs, and the frames a function process writes.
// The seeds in testdata/fuzz run as ordinary tests; go test -fuzz=FuzzX
// explores from them.

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/goccy/go-json"
)

// wantKind fails t unless err is an *Error of kind: a decoder must never
// leak an untyped error, which noded would answer as internal.
func wantKind(t *testing.T, what string, err error, kind Kind) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("%s: error %v (%T), want kind %s", what, err, err, kind)
	}
}

// decodeValid decodes body into a new request and validates it. It
// reports false where either refuses body, once t has checked that the
// refusal is a bad request.
func decodeValid[R any, P interface {
	*R
	Validate() error
}](t *testing.T, body []byte) (P, bool) {
	t.Helper()
	req := P(new(R))
	if err := Decode(body, req); err != nil {
		wantKind(t, "Decode", err, KindBadRequest)
		return nil, false
	}
	if err := req.Validate(); err != nil {
		wantKind(t, "Validate", err, KindBadRequest)
		return nil, false
	}
	return req, true
}

func FuzzDecodeStartRequest(f *testing.F) {
	f.Add([]byte(`{"fn_name":"echo","fn_args":[1,2,3],"timeout":5}`))
	f.Add([]byte(`{"fn_name":"sleep","fn_args":{"seconds":1},"timeout":0,"abort_after":2.5,"request_id":"r1","log_offset":3}`))
	f.Add([]byte(`{"fn_name":"echo","timeout":5,"request_id":"r2","release":["1:2:1700000000.000001:0123456789abcdef"]}`))
	f.Add([]byte(`{"fn_name":"echo","timeout":5,"release":["1:2:3"]}`))
	f.Add([]byte(`{"fn_name":"echo","timeout":5,"release":"1:2:1700000000.000001:0123456789abcdef"}`))
	f.Add([]byte(`{"fn_name":"x","timeout":-1}`))
	f.Add([]byte(`{"fn_name":"x","timeout":1e400}`))
	f.Add([]byte(`{"fn_name":"x","timeout":1,"fn_args":[1e400]}`))
	f.Add([]byte(`{"fn_name":"x","unknown":1}`))
	f.Add([]byte(panicBody))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ok := decodeValid[StartRequest](t, body)
		if !ok {
			return
		}
		// What was accepted survives a trip through the wire unchanged.
		again := roundTrip(t, req, new(StartRequest))
		if err := again.Validate(); err != nil {
			t.Fatalf("valid request %+v re-encoded fails Validate: %v", *req, err)
		}
		if !sameJSON(t, req, again) {
			t.Fatalf("request %q decoded to %+v, re-decoded to %+v", body, *req, *again)
		}
	})
}

func FuzzDecodeWaitRequest(f *testing.F) {
	f.Add([]byte(`{"id":"1:2:1700000000.000001:0123456789abcdef","timeout":2,"log_offset":4,"wake_on_log":true}`))
	f.Add([]byte(`{"id":"","timeout":1}`))
	f.Add([]byte(`{"id":"a","timeout":"1"}`))
	f.Add([]byte(`{"id":"a","timeout":1} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ok := decodeValid[WaitRequest](t, body)
		if !ok {
			return
		}
		again := roundTrip(t, req, new(WaitRequest))
		if *again != *req {
			t.Fatalf("request %q decoded to %+v, re-decoded to %+v", body, *req, *again)
		}
		// The ID is parsed after decoding; a malformed one is a bad
		// request, not a panic.
		if _, err := ParseCallID(req.ID); err != nil {
			wantKind(t, "ParseCallID", err, KindBadRequest)
		}
	})
}

func FuzzParseCallID(f *testing.F) {
	f.Add("24101:24110:1795317346.017856:92dd2f59a4f2486d")
	f.Add("1:1:0.000000:0000000000000000")
	f.Add("1:1:-1.000000:0000000000000000")
	f.Add("1:1:1.1:0000000000000000")
	f.Add("1:1:1.000000:000000000000000g")
	f.Add("::::")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseCallID(s)
		if err != nil {
			wantKind(t, "ParseCallID", err, KindBadRequest)
			return
		}
		// An ID this daemon accepts formats back to one that parses to
		// the same call: the table keys calls by it.
		again, err := ParseCallID(id.String())
		if err != nil {
			t.Fatalf("ParseCallID(%q) = %+v, whose String %q does not parse: %v", s, id, id.String(), err)
		}
		if again.PPID != id.PPID || again.CPID != id.CPID || !again.Time.Equal(id.Time) || again.Random != id.Random {
			t.Fatalf("ParseCallID(%q) = %+v, but its String %q parses to %+v", s, id, id.String(), again)
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	f.Add([]byte(`{"protocol":1,"pid":42}`))
	f.Add([]byte(`{"protocol":2,"pid":42}`))
	f.Add([]byte(`{"protocol":0}`))
	f.Add([]byte(`hello`))
	f.Fuzz(func(t *testing.T, line []byte) {
		h, err := DecodeHello(line)
		if err != nil {
			wantKind(t, "DecodeHello", err, KindProtocolError)
			return
		}
		if h.Protocol != ProtocolVersion {
			t.Fatalf("DecodeHello(%q) accepted protocol %d, want only %d", line, h.Protocol, ProtocolVersion)
		}
	})
}

func FuzzDecodeFunctionResult(f *testing.F) {
	f.Add([]byte(`{"result":{"a":"\"x\""}}` + "\n"))
	f.Add([]byte(`{"result":null}`))
	f.Add([]byte(`{"error":{"kind":"function_failed","message":"say \"no\"","exit_code":3}}`))
	f.Add([]byte(`{"error":{"message":"no kind"}}`))
	f.Add([]byte(`{"result":1}{"result":2}`))
	f.Add([]byte(`{"result":1,"error":{"kind":"x"}}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		r, err := DecodeFunctionResult(out)
		if err != nil {
			wantKind(t, "DecodeFunctionResult", err, KindProtocolError)
			return
		}
		if (r.Result == nil) == (r.Error == nil) {
			t.Fatalf("DecodeFunctionResult(%q) = %+v: want exactly one of result and error", out, r)
		}
		if r.Error != nil && r.Error.Kind == "" {
			t.Fatalf("DecodeFunctionResult(%q): error without a kind", out)
		}
		if r.Result != nil && CheckJSON(r.Result) != nil {
			t.Fatalf("DecodeFunctionResult(%q): result %q is not valid JSON", out, r.Result)
		}
	})
}

// FuzzCheckJSON holds the scanner to its definition: it accepts exactly
// what Go's encoding/json finds valid, if that is valid UTF-8 with no
// lone surrogate escape, no duplicate key, no nesting past maxDepth and
// no number beyond a float64's range.
// What it accepts, go-json must decode.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-0.5e+3,true,false,null,"\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t"]}`,
		` [ {} , [ ] ] `, `01`, `1.`, `-`, `1e`, `"\ud800"`, `"\udc00\ud800"`, `"\ud800\udc00"`,
		"\"\xff\"", "\"\t\"", "{}\x00", `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"a":1},"b":{"a":1}}`,
		`[[[[[[[[[[]]]]]]]]]]`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `tru`, `"`, `"\`, `"\u12"`,
		panicBody,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckJSON(data)
		want, why := acceptable(data)
		if (err == nil) != want {
			t.Fatalf("CheckJSON(%q) = %v, but the reference says accept=%v (%s)", data, err, want, why)
		}
		if err != nil {
			var jerr *JSONError
			if !errors.As(err, &jerr) || jerr.Offset < 0 || jerr.Offset > len(data) {
				t.Fatalf("CheckJSON(%q) = %v: want a *JSONError with an offset within the input", data, err)
			}
			return
		}
		// Accepted, it reads the same to go-json as to encoding/json.
		var goccy, std any
		goccyErr := UnmarshalStrict(data, &goccy, RefuseUnknownFields)
		stdErr := stdjson.Unmarshal(data, &std)
		if (goccyErr == nil) != (stdErr == nil) || !reflect.DeepEqual(goccy, std) {
			t.Fatalf("CheckJSON accepts %q, which go-json decodes to %#v, %v, and encoding/json to %#v, %v", data, goccy, goccyErr, std, stdErr)
		}
	})
}

// acceptable is the reference for FuzzCheckJSON, built from Go's
// encoding/json and unicode/utf8 rather than from the scanner's code.
func acceptable(data []byte) (bool, string) {
	switch {
	case !stdjson.Valid(data):
		return false, "encoding/json: not valid"
	case !utf8.Valid(data):
		return false, "not UTF-8"
	case hasLoneSurrogate(data):
		return false, "lone surrogate escape"
	}
	// Keys are compared as encoding/json decodes them.
	type open struct {
		object, keyNext bool
		keys            map[string]bool
	}
	var stack []*open
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].keyNext = true
		}
	}
	dec := stdjson.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are checked as written, not as float64 reads them
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true, ""
		}
		if err != nil {
			return false, "encoding/json: " + err.Error()
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].keyNext && tok != stdjson.Delim('}') {
			key := tok.(string)
			if stack[n-1].keys[key] {
				return false, "duplicate key " + strconv.Quote(key)
			}
			stack[n-1].keys[key], stack[n-1].keyNext = true, false
			continue
		}
		switch tok {
		case stdjson.Delim('{'), stdjson.Delim('['):
			if len(stack) == maxDepth {
				return false, "too deep"
			}
			stack = append(stack, &open{object: tok == stdjson.Delim('{'), keyNext: true, keys: map[string]bool{}})
		case stdjson.Delim('}'), stdjson.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			if n, ok := tok.(stdjson.Number); ok {
				if _, err := strconv.ParseFloat(string(n), 64); err != nil {
					return false, "number beyond a float64 (I-JSON)"
				}
			}
			valueDone()
		}
	}
}

// hasLoneSurrogate reports whether data, valid JSON, holds a \u escape of
// a surrogate that is not the high half of a pair followed by its low
// half.
func hasLoneSurrogate(data []byte) bool {
	hex := func(i int) rune {
		if i+4 > len(data) {
			return -1
		}
		n, err := strconv.ParseUint(string(data[i:i+4]), 16, 16)
		if err != nil {
			return -1
		}
		return rune(n)
	}
	inString := false
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '"':
			inString = !inString
		case inString && data[i] == '\\' && data[i+1] == 'u':
			r := hex(i + 2)
			if !utf16.IsSurrogate(r) {
				i += 5
				continue
			}
			if lo := hex(i + 8); r < 0xdc00 && data[i+6] == '\\' && data[i+7] == 'u' && 0xdc00 <= lo && lo <= 0xdfff {
				i += 11
				continue
			}
			return true
		case inString && data[i] == '\\':
			i++
		}
	}
	return false
}

// roundTrip encodes v and decodes it into into, strictly, as noded would.
func roundTrip[T any](t *testing.T, v *T, into *T) *T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %+v: %v", *v, err)
	}
	if err := Decode(b, into); err != nil {
		t.Fatalf("decoding our own encoding %s: %v", b, err)
	}
	return into
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("encoding: %v, %v", err1, err2)
	}
	return bytes.Equal(ja, jb)
}
