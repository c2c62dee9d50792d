package rpc

import "testing"

func TestEscapeText(t *testing.T) {
	for in, want := range map[string]string{
		"echo":            "echo",
		"café ✓":          "café ✓",
		"f\x1b[2J":        `f\x1b[2J`,
		"r\u202e1":        `r\u202e1`,
		"a\nb\x7f":        `a\nb\x7f`,
		"c\u009b":         `c\u009b`,
		"bad\xffbyte":     `bad\xffbyte`,
		"zero\u200bwidth": `zero\u200bwidth`,
	} {
		got := EscapeText(in)
		if got != want {
			t.Errorf("EscapeText(%q) = %q, want %q", in, got, want)
		}
		if err := CheckText("x", got); err != nil {
			t.Errorf("EscapeText(%q) = %q, which CheckText refuses: %v", in, got, err)
		}
	}
}
