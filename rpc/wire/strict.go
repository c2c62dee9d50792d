package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// Strict JSON. Every body noded reads from the network and every frame it
// reads from a function process is checked here before go-json decodes it,
// because go-json alone is neither strict nor safe: its stream decoder
// panics on some malformed input, and it accepts what other readers
// refuse or read otherwise (invalid UTF-8, raw control characters, 01 and
// 1., duplicate keys with the last one winning, keys in any case, a NUL
// after the value). A proxy in front of noded and noded itself must never
// disagree on what a body says, so a body is accepted only if it is
//
//   - one JSON value as RFC 8259's grammar has it, with nothing but
//     whitespace (space, tab, CR, LF) around it;
//   - valid UTF-8 throughout, with \u escapes of UTF-16 surrogates only in
//     pairs (a lone surrogate is refused: it is no character);
//   - free of duplicate keys in every object at every depth, compared
//     after unescaping;
//   - nested at most MaxDepth levels;
//   - made of keys that match the Go type's fields exactly: a key that
//     matches a field only without regard to case is refused, and so is
//     an unknown key where the caller refuses unknown fields;
//   - made of values of the types the fields want, numbers within range;
//   - free of numbers beyond a float64's range anywhere, in values of any
//     type too (fn_args, results), as I-JSON (RFC 7493) has it: go-json
//     would accept them and then fail to encode them again.
//
// The check is one pass over the bytes, linear in their length, that
// allocates only for objects of more than linearKeys keys and for
// messages; the codec (see Codec) then decodes with its Unmarshal (never a
// stream decoder) under a recover, so that even a bug of the JSON library
// cannot take a daemon down.

// UnknownFields says what a strict decode does with an object key that
// names no field of the Go struct it is decoded into.
type UnknownFields uint8

const (
	// RefuseUnknownFields refuses the key: for requests and function
	// frames, where an unknown key is a typo or a peer of another release.
	RefuseUnknownFields UnknownFields = iota
	// IgnoreUnknownFields skips the key's value (still checked for its
	// syntax): for answers, to which a newer node may add fields without
	// a new protocol version.
	IgnoreUnknownFields
)

// JSONError says why a strict decode refused its input, and where.
type JSONError struct {
	// Offset is the byte offset of the problem in the input, -1 when it
	// is not known (the problem was the JSON library's).
	Offset int
	// Path names the field the problem is in, as "calls[2].state"; it is
	// empty at the top level and inside values of any type (fn_args).
	Path string
	// Problem says what is wrong.
	Problem string
}

// Error implements error: "timeout: want a number of seconds, got a
// string (at byte 11)".
func (e *JSONError) Error() string {
	msg := e.Problem
	if e.Path != "" {
		msg = e.Path + ": " + msg
	}
	if e.Offset >= 0 {
		msg += fmt.Sprintf(" (at byte %d)", e.Offset)
	}
	return msg
}

// UnmarshalStrict decodes data, one JSON value, into v, a non-nil
// pointer, after checking it as strictly as the comment above says. The
// error, if any, is a *JSONError; callers give it the kind of error
// their side of the wire calls it.
func UnmarshalStrict(data []byte, v any, unknown UnknownFields) (err error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &JSONError{Offset: -1, Problem: fmt.Sprintf("cannot decode into %T: want a non-nil pointer", v)}
	}
	if err := scan(data, shapeOf(rv.Type().Elem()), unknown); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = &JSONError{Offset: -1, Problem: fmt.Sprintf("the JSON decoder failed: %v", p)}
		}
	}()
	if err := codec.Unmarshal(data, v); err != nil {
		return &JSONError{Offset: -1, Problem: err.Error()}
	}
	if len(data) > detachAbove {
		detachStrings(rv, 0)
	}
	return nil
}

// CheckJSON checks that data is one strict JSON value of any shape, as
// UnmarshalStrict would, without decoding it. The error, if any, is a
// *JSONError.
func CheckJSON(data []byte) error {
	return scan(data, nil, IgnoreUnknownFields)
}

// blank reports whether data holds nothing but JSON whitespace.
func blank(data []byte) bool {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// trimSpace drops the JSON whitespace around data, for quoting it.
func trimSpace(data []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(data) > 0 && isSpace(data[0]) {
		data = data[1:]
	}
	for len(data) > 0 && isSpace(data[len(data)-1]) {
		data = data[:len(data)-1]
	}
	return data
}

// Marshal encodes v as the wire carries it: like json.Marshal, but with
// '<', '>' and '&' as themselves. Both JSON libraries escape them by
// default, go-json also inside a json.RawMessage such as a call's result,
// so a result of such characters would reach the master six times its
// size and no longer the bytes the function wrote.
func Marshal(v any) ([]byte, error) {
	return codec.Marshal(v)
}

// Codec is the JSON library behind UnmarshalStrict and Marshal, which use
// it only after (and for Marshal, besides) their own checks.
//
// A function process uses the standard library's encoding/json: it links
// nothing else, and every call's process pays, at its start, for every
// package it links (go-json made a process start 0.2-0.3 ms, 7-10%,
// slower; doc/performance.md). noded and the master decode and encode on
// every request, where go-json is several times faster, so package rpc,
// which a function process never links, installs go-json with SetCodec
// when it is initialised. Both libraries decode into the same struct tags
// the same way, and the strict scanner has refused beforehand everything
// on which they could disagree.
type Codec struct {
	// Marshal encodes v without escaping '<', '>' and '&'.
	Marshal func(v any) ([]byte, error)
	// Unmarshal decodes one JSON value already checked to be strict.
	Unmarshal func(data []byte, v any) error
	// ContextDecoders says Unmarshal hands a value to a method
	// UnmarshalJSON(context.Context, []byte) error of its type, as
	// go-json does and encoding/json does not: only then does the strict
	// scanner leave such a type's values to it.
	ContextDecoders bool
}

// codec is the Codec in use: encoding/json until SetCodec.
var codec = Codec{Marshal: marshalStd, Unmarshal: json.Unmarshal}

// SetCodec makes c the JSON library behind UnmarshalStrict and Marshal.
// It is meant for a package's initialisation (package rpc's), before any
// JSON is decoded: it is not safe to call while another goroutine decodes.
func SetCodec(c Codec) { codec = c }

// marshalStd is encoding/json's Marshal without its HTML escaping.
func marshalStd(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
