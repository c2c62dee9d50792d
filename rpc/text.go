package rpc

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckText reports a bad_request error naming field when s is not valid
// UTF-8 or has a character that acts on a terminal or a log instead of
// being printed: a control character (Unicode category Cc: C0 controls
// such as ESC and newline, DEL, and C1 controls such as U+009B, which
// some terminals take for an escape sequence's start) or a format
// character (category Cf: bidirectional overrides and isolates such as
// U+202E, which reorder the text shown after them, and invisible ones
// such as U+200B and U+FEFF, which make two different strings look the
// same). It is the one rule for every string a master stores from a node
// or a client and shows to an operator.
func CheckText(field, s string) error {
	if why := badText(s); why != "" {
		return Errorf(KindBadRequest, "%s %s", field, why)
	}
	return nil
}

// badText says what CheckText refuses in s, or "".
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if i := strings.IndexFunc(s, unprintable); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Sprintf("has the control or format character %U at byte %d", r, i)
	}
	return ""
}

// unprintable reports whether CheckText refuses r.
func unprintable(r rune) bool {
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7f
	}
	return unicode.In(r, unicode.Cc, unicode.Cf)
}

// EscapeText returns s with every character CheckText refuses written as
// a Go escape (\x1b, \u202e) and every byte that is not UTF-8 as \xNN;
// text CheckText takes is returned as it is.
func EscapeText(s string) string {
	if badText(s) == "" {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unprintable(r):
			q := strconv.QuoteRune(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
