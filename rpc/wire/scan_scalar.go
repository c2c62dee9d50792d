package wire

// The scanner's strings and numbers: the bytes of JSON where a reader's
// laxness hides.

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

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

// maxFloatDigits is the most digits before the decimal point a number
// without an exponent can have and still be within a float64's range
// (1.8e308): a shorter one needs no parsing to know it is.
const maxFloatDigits = 308

// checkMagnitude refuses a number of any value (fn_args, a result) whose
// magnitude is beyond a float64's, as I-JSON (RFC 7493) does. RFC 8259
// leaves the range to the implementation, and go-json's is a float64's:
// it accepts 1e400 inside a json.RawMessage but fails to encode it again,
// so a call whose arguments or result held one would be run and then
// never answered. A number that only loses precision, or underflows to
// zero, encodes unchanged and passes.
func (s *scanner) checkMagnitude(lit []byte, at int) error {
	if len(lit) <= maxFloatDigits && !bytes.ContainsAny(lit, "eE") {
		return nil
	}
	if _, err := strconv.ParseFloat(string(lit), 64); err != nil {
		return s.fail(at, "the number %s is beyond the range of a 64-bit float", clipNumber(lit))
	}
	return nil
}

// clipNumber shortens a number literal for a message.
func clipNumber(lit []byte) string {
	const n = 40
	if len(lit) > n {
		return fmt.Sprintf("%s... (%d digits)", lit[:n], len(lit))
	}
	return string(lit)
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
