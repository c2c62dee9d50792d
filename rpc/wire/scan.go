package wire

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxDepth bounds how deeply arrays and objects nest. No body of the wire
// comes near it (fn_args and results are the caller's, but a thousand
// levels is no data anyone means); it bounds the scanner's recursion,
// and go-json's after it.
const MaxDepth = 1000

// linearKeys is how many keys an object holds before its duplicates are
// looked for in a map rather than by comparing with each earlier key: the
// comparisons cost nothing to set up, the map is linear for big objects.
const linearKeys = 16

// valueKind is a kind of JSON value, a bit so that a set fits a byte.
type valueKind uint8

const (
	jsString valueKind = 1 << iota
	jsNumber
	jsBool
	jsNull
	jsObject
	jsArray
)

// startKind is the kind of value each byte begins, 0 for none.
var startKind = func() (t [256]valueKind) {
	t['"'], t['-'], t['t'], t['f'], t['n'], t['{'], t['['] = jsString, jsNumber, jsBool, jsBool, jsNull, jsObject, jsArray
	for c := '0'; c <= '9'; c++ {
		t[c] = jsNumber
	}
	return t
}()

// plain is true for the bytes a string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// A pathStep is one step into a typed value, kept for messages.
type pathStep struct {
	name  string // a struct field
	key   []byte // a map key, when name is empty
	index int    // an array element, when name and key are empty
}

// scanner checks one JSON text. Its stacks are shared by the objects that
// nest: an object's keys and unescaped keys sit above its parent's and are
// dropped when it closes.
type scanner struct {
	data    []byte
	pos     int
	depth   int
	unknown UnknownFields
	keys    [][]byte // the keys of the open objects that compare one by one
	arena   []byte   // keys with escapes, unescaped
	path    []pathStep
}

// scanners keeps scanners with their stacks grown, so that a scan in the
// steady state allocates nothing.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

// maxKeptStack is the capacity past which a scanner's stacks are dropped
// rather than kept in the pool, so one odd body does not pin memory.
const maxKeptStack = 4096

// scan checks data as one JSON value of shape sh, surrounded by nothing
// but whitespace.
func scan(data []byte, sh *shape, unknown UnknownFields) error {
	s := scanners.Get().(*scanner)
	defer s.release()
	s.data, s.unknown = data, unknown
	if err := s.value(sh); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos < len(data) {
		return s.fail(s.pos, "%s after the JSON value", quoteByte(data[s.pos]))
	}
	return nil
}

// release returns s to the pool holding no reference to what it scanned.
func (s *scanner) release() {
	clear(s.keys[:cap(s.keys)])
	clear(s.path[:cap(s.path)])
	keys, arena, path := s.keys[:0], s.arena[:0], s.path[:0]
	if cap(keys) > maxKeptStack || cap(arena) > maxKeptStack || cap(path) > maxKeptStack {
		keys, arena, path = nil, nil, nil
	}
	*s = scanner{keys: keys, arena: arena, path: path}
	scanners.Put(s)
}

func (s *scanner) skipSpace() {
	data, i := s.data, s.pos
	for i < len(data) && space[data[i]] {
		i++
	}
	s.pos = i
}

// space is true for the four bytes JSON takes as whitespace.
var space = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

func (s *scanner) fail(at int, format string, args ...any) error {
	return &JSONError{Offset: at, Path: s.pathString(), Problem: fmt.Sprintf(format, args...)}
}

func (s *scanner) pathString() string {
	var b strings.Builder
	for _, p := range s.path {
		switch {
		case p.name != "":
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p.name)
		case p.key != nil:
			fmt.Fprintf(&b, "[%q]", p.key)
		default:
			fmt.Fprintf(&b, "[%d]", p.index)
		}
	}
	return b.String()
}

// value scans the value at s.pos (after whitespace) into a Go value of
// shape sh, nil for any.
func (s *scanner) value(sh *shape) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.fail(s.pos, "unexpected end of input, want a value")
	}
	at, c := s.pos, s.data[s.pos]
	kind := startKind[c]
	if kind == 0 {
		return s.fail(at, "%s, want a value", quoteByte(c))
	}
	if sh != nil && kind != jsNull && sh.takes&kind == 0 {
		return s.fail(at, "want %s, got %s", sh.want, s.mismatch(kind, sh))
	}
	switch kind {
	case jsObject:
		return s.object(sh)
	case jsArray:
		return s.array(sh)
	case jsString:
		_, _, err := s.str()
		return err
	case jsNumber:
		if err := s.number(); err != nil {
			return err
		}
		if sh != nil && sh.num != numAny {
			return s.checkNumber(sh, s.data[at:s.pos], at)
		}
		return s.checkMagnitude(s.data[at:s.pos], at)
	}
	lit := "null"
	switch c {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	}
	if end := at + len(lit); end > len(s.data) || string(s.data[at:end]) != lit {
		return s.fail(at, "invalid literal, want %s", lit)
	}
	s.pos += len(lit)
	return nil
}

// mismatch describes the value at s.pos, of kind, that sh does not take:
// a string is quoted, and one that holds a number or a duration where a
// number is wanted says how to write it, since that is the usual slip
// ("timeout": "5" or "5s" for 5).
func (s *scanner) mismatch(kind valueKind, sh *shape) string {
	switch {
	case kind == jsBool && s.data[s.pos] == 't':
		return "true"
	case kind == jsBool:
		return "false"
	case kind != jsString:
		return kindName(kind)
	}
	raw, escaped, err := s.str()
	if err != nil || escaped {
		return kindName(kind)
	}
	text := string(raw)
	got := fmt.Sprintf("the string %q", Clip(text, 40))
	if sh.takes&jsNumber == 0 {
		return got
	}
	if _, err := strconv.ParseFloat(text, 64); err == nil {
		return got + "; write the number without quotes: " + text
	}
	if d, err := time.ParseDuration(text); err == nil && strings.HasSuffix(sh.want, " seconds") {
		return got + "; write a number of seconds without quotes: " + strconv.FormatFloat(d.Seconds(), 'g', -1, 64)
	}
	return got
}

func kindName(k valueKind) string {
	switch k {
	case jsString:
		return "a string"
	case jsNumber:
		return "a number"
	case jsBool:
		return "true or false"
	case jsObject:
		return "an object"
	case jsArray:
		return "an array"
	}
	return "null"
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("invalid character %q", rune(c))
	}
	return fmt.Sprintf("invalid byte %#02x", c)
}

// enter opens an array or object at s.pos, refusing one nested too deep.
func (s *scanner) enter() error {
	if s.depth++; s.depth > MaxDepth {
		return s.fail(s.pos, "arrays and objects nested deeper than %d levels", MaxDepth)
	}
	s.pos++
	s.skipSpace()
	return nil
}

// after reads the byte after an element: true if it is sep (and another
// element follows), false if it is end.
func (s *scanner) after(what string, end byte) (bool, error) {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return false, s.fail(s.pos, "unexpected end of input after %s, want ',' or %q", what, rune(end))
	}
	switch c := s.data[s.pos]; c {
	case ',':
		s.pos++
		return true, nil
	case end:
		s.pos++
		s.depth--
		return false, nil
	default:
		return false, s.fail(s.pos, "%s after %s, want ',' or %q", quoteByte(c), what, rune(end))
	}
}

func (s *scanner) array(sh *shape) error {
	if err := s.enter(); err != nil {
		return err
	}
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return nil
	}
	var elem *shape
	if sh != nil {
		elem = sh.elem
	}
	for i := 0; ; i++ {
		if sh != nil {
			s.path = append(s.path, pathStep{index: i})
		}
		if err := s.value(elem); err != nil {
			return err
		}
		if sh != nil {
			s.path = s.path[:len(s.path)-1]
		}
		if more, err := s.after("an array element", ']'); !more {
			return err
		}
	}
}

func (s *scanner) object(sh *shape) error {
	if err := s.enter(); err != nil {
		return err
	}
	keysFrom, arenaFrom := len(s.keys), len(s.arena)
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return s.checkRequired(sh, keysFrom, nil, s.pos-1)
	}
	var seen map[string]struct{} // once the object has more than linearKeys keys
	for {
		s.skipSpace()
		at := s.pos
		if at >= len(s.data) || s.data[at] != '"' {
			if at >= len(s.data) {
				return s.fail(at, "unexpected end of input, want an object key")
			}
			return s.fail(at, "%s, want an object key (a string)", quoteByte(s.data[at]))
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			key = s.unescape(raw)
		}
		if err := s.unique(key, at, keysFrom, &seen); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.fail(s.pos, "want ':' after the object key")
		}
		s.pos++
		vsh, typed, err := s.member(sh, key, at)
		if err != nil {
			return err
		}
		s.skipSpace()
		valueAt := s.pos
		if err := s.value(vsh); err != nil {
			return err
		}
		if sh != nil && len(sh.required) > 0 && string(s.data[valueAt:s.pos]) == "null" && slices.Contains(sh.required, string(key)) {
			// null would decode as the zero value, the very meaning a
			// required field must not take by accident.
			return s.fail(valueAt, "null is not a value: this field is required")
		}
		if typed {
			s.path = s.path[:len(s.path)-1]
		}
		if more, err := s.after("an object member", '}'); !more {
			if err == nil {
				err = s.checkRequired(sh, keysFrom, seen, s.pos-1)
			}
			s.keys, s.arena = s.keys[:keysFrom], s.arena[:arenaFrom]
			return err
		}
	}
}

// checkRequired refuses an object of shape sh, closed at byte at, that
// lacks a required key; its keys are s.keys[from:], or seen once unique
// moved them there.
func (s *scanner) checkRequired(sh *shape, from int, seen map[string]struct{}, at int) error {
	if sh == nil {
		return nil
	}
	for _, name := range sh.required {
		_, inSeen := seen[name]
		if !inSeen && !slices.ContainsFunc(s.keys[from:], func(k []byte) bool { return string(k) == name }) {
			return s.fail(at, "missing %q, which is required", name)
		}
	}
	return nil
}

// unique refuses a key the open object already holds; keys are compared
// unescaped, so "a" and "\u0061" are the same key.
func (s *scanner) unique(key []byte, at, from int, seen *map[string]struct{}) error {
	if *seen == nil {
		for _, k := range s.keys[from:] {
			if bytes.Equal(k, key) {
				return s.fail(at, "duplicate key %q", key)
			}
		}
		s.keys = append(s.keys, key)
		if len(s.keys)-from <= linearKeys {
			return nil
		}
		*seen = make(map[string]struct{}, 2*linearKeys)
		for _, k := range s.keys[from:] {
			(*seen)[string(k)] = struct{}{}
		}
		return nil
	}
	if _, dup := (*seen)[string(key)]; dup {
		return s.fail(at, "duplicate key %q", key)
	}
	(*seen)[string(key)] = struct{}{}
	return nil
}

// member returns the shape of the value of key in an object of shape sh,
// and pushes the key on the path if that value is typed.
func (s *scanner) member(sh *shape, key []byte, at int) (*shape, bool, error) {
	switch {
	case sh == nil:
		return nil, false, nil
	case sh.isMap:
		s.path = append(s.path, pathStep{key: key})
		return sh.elem, true, nil
	}
	if f, ok := sh.fields[string(key)]; ok {
		s.path = append(s.path, pathStep{name: f.name})
		return f.shape, true, nil
	}
	// go-json matches keys without regard to case: "FN_NAME" would fill
	// fn_name, where a reader that honours case skips it or refuses it.
	for _, name := range sh.names {
		if strings.EqualFold(name, string(key)) {
			return nil, false, s.fail(at, "key %q is not %q: keys are case-sensitive", key, name)
		}
	}
	if s.unknown == RefuseUnknownFields {
		return nil, false, s.fail(at, "unknown field %q", key)
	}
	return nil, false, nil
}
