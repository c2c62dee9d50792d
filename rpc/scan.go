package rpc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds how deeply arrays and objects nest. No body of the wire
// comes near it (fn_args and results are the caller's, but a thousand
// levels is no data anyone means); it bounds the scanner's recursion,
// and go-json's after it.
const maxDepth = 1000

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

// scan checks data as one JSON value of shape sh, surrounded by nothing
// but whitespace.
func scan(data []byte, sh *shape, unknown UnknownFields) error {
	s := scanner{data: data, unknown: unknown}
	if err := s.value(sh); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos < len(data) {
		return s.fail(s.pos, "%s after the JSON value", quoteByte(data[s.pos]))
	}
	return nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

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
		return s.fail(at, "want %s, got %s", sh.want, kindName(kind))
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
		return nil
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
	if s.depth++; s.depth > maxDepth {
		return s.fail(s.pos, "arrays and objects nested deeper than %d levels", maxDepth)
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
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return nil
	}
	keysFrom, arenaFrom := len(s.keys), len(s.arena)
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
		if err := s.value(vsh); err != nil {
			return err
		}
		if typed {
			s.path = s.path[:len(s.path)-1]
		}
		if more, err := s.after("an object member", '}'); !more {
			s.keys, s.arena = s.keys[:keysFrom], s.arena[:arenaFrom]
			return err
		}
	}
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

// str scans the string at s.pos and returns what is between its quotes,
// and whether that holds escapes.
func (s *scanner) str() ([]byte, bool, error) {
	data, start := s.data, s.pos
	escaped := false
	i := start + 1
	for {
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i >= len(data) {
			return nil, false, s.fail(start, "unterminated string")
		}
		switch c := data[i]; {
		case c == '"':
			s.pos = i + 1
			return data[start+1 : i], escaped, nil
		case c == '\\':
			n, err := s.escape(i)
			if err != nil {
				return nil, false, err
			}
			i += n
			escaped = true
		case c < 0x20:
			return nil, false, s.fail(i, "control character %#02x in a string: it must be escaped", c)
		default:
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, s.fail(i, "invalid UTF-8 in a string")
			}
			i += n
		}
	}
}

// escape checks the escape at data[i] and returns its length. A \u escape
// of a UTF-16 surrogate must be the high half of a pair whose low half
// follows: a lone surrogate is no character, and readers disagree on what
// to make of it (go-json makes U+FFFD, others keep it), so it is refused.
func (s *scanner) escape(i int) (int, error) {
	data := s.data
	if i+1 >= len(data) {
		return 0, s.fail(i, "unterminated string")
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
	default:
		return 0, s.fail(i, "invalid escape %q in a string", data[i:i+2])
	}
	r, ok := hex4(data, i+2)
	switch {
	case !ok:
		return 0, s.fail(i, "invalid \\u escape in a string: want four hex digits")
	case !utf16.IsSurrogate(r):
		return 6, nil
	case r < 0xdc00 && i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u':
		if lo, ok := hex4(data, i+8); ok && 0xdc00 <= lo && lo <= 0xdfff {
			return 12, nil
		}
	}
	return 0, s.fail(i, "lone UTF-16 surrogate %s in a string", data[i:i+6])
}

// hex4 reads the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends raw, the checked content of a string, to the arena
// with its escapes replaced, and returns it.
func (s *scanner) unescape(raw []byte) []byte {
	from := len(s.arena)
	for i := 0; i < len(raw); {
		if raw[i] != '\\' {
			s.arena = append(s.arena, raw[i])
			i++
			continue
		}
		c := raw[i+1]
		switch c {
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			r, _ := hex4(raw, i+2)
			i += 6
			if utf16.IsSurrogate(r) {
				lo, _ := hex4(raw, i+2)
				r = utf16.DecodeRune(r, lo)
				i += 6
			}
			s.arena = utf8.AppendRune(s.arena, r)
			continue
		}
		s.arena = append(s.arena, c)
		i += 2
	}
	return s.arena[from:len(s.arena):len(s.arena)]
}

// number scans the number at s.pos exactly as RFC 8259's grammar has it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	data, i := s.data, s.pos
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
		if i < len(data) && isDigit(data[i]) {
			return s.fail(i, "leading zero in a number")
		}
	case i < len(data) && isDigit(data[i]):
		i = digits(data, i)
	default:
		return s.fail(i, "want a digit in a number")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return s.fail(i, "want a digit after the decimal point")
		}
		i = digits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return s.fail(i, "want a digit in the exponent")
		}
		i = digits(data, i)
	}
	s.pos = i
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

// checkNumber refuses a number the Go value of shape sh cannot hold: a
// fraction for an integer, a negative for an unsigned, and what is out of
// range, which go-json would refuse with a message that names no field.
func (s *scanner) checkNumber(sh *shape, lit []byte, at int) error {
	var err error
	switch sh.num {
	case numInt, numUint:
		if bytes.ContainsAny(lit, ".eE") {
			return s.fail(at, "want %s, got %s", sh.want, lit)
		}
		if sh.num == numInt {
			_, err = strconv.ParseInt(string(lit), 10, sh.bits)
		} else if lit[0] == '-' {
			return s.fail(at, "want %s, got %s", sh.want, lit)
		} else {
			_, err = strconv.ParseUint(string(lit), 10, sh.bits)
		}
	case numFloat:
		_, err = strconv.ParseFloat(string(lit), sh.bits)
	}
	if err != nil {
		return s.fail(at, "%s is out of range for %s", lit, sh.want)
	}
	return nil
}
