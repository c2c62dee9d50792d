package backend

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-json"
	"github.com/noderpc/noderpc/rpc"
)

func nop(context.Context, json.RawMessage) (any, error) { return nil, nil }

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		want bool // valid
	}{
		{"echo", true},
		{"node_info", true},
		{"a.b-c_D9", true},
		{"x.", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{".hidden", false},
		{".", false},
		{"..", false},
		{"a..b", false},
		{"a/b", false},
		{"../etc/passwd", false},
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
		{strings.Repeat("a", MaxNameLen+1), false},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if got := err == nil; got != tt.want {
			t.Errorf("CheckName(%q) = %v, want valid %v", tt.name, err, tt.want)
		}
		if err != nil && rpc.KindOf(err) != rpc.KindBadRequest {
			t.Errorf("CheckName(%q) kind = %q, want %q", tt.name, rpc.KindOf(err), rpc.KindBadRequest)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if got := r.Names(); len(got) != 0 {
		t.Errorf("NewRegistry().Names() = %v, want none", got)
	}
	r.Register("zeta", nop)
	r.Register("alpha", nop)
	r.Register("mid", nop)
	if got, want := r.Names(), []string{"alpha", "mid", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if fn, ok := r.Lookup("mid"); !ok || fn == nil {
		t.Errorf("Lookup(mid) = %v, %v; want the function, true", fn, ok)
	}
	if fn, ok := r.Lookup("nope"); ok || fn != nil {
		t.Errorf("Lookup(nope) = %v, %v; want nil, false", fn, ok)
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		desc string
		name string
		fn   Func
		want string // in the panic message
	}{
		{"duplicate", "dup", nop, "registered twice"},
		{"empty name", "", nop, "empty"},
		{"slash", "a/b", nop, "character"},
		{"leading dot", ".x", nop, "starts with"},
		{"nil function", "nilfn", nil, "nil function"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := NewRegistry()
			r.Register("dup", nop)
			defer func() {
				v := recover()
				if v == nil {
					t.Fatalf("Register(%q) did not panic", tt.name)
				}
				if got := v.(string); !strings.Contains(got, tt.want) {
					t.Errorf("Register(%q) panicked with %q, want it to mention %q", tt.name, got, tt.want)
				}
			}()
			r.Register(tt.name, tt.fn)
		})
	}
}

func TestRegisterBuiltins(t *testing.T) {
	r := NewRegistry()
	RegisterBuiltins(r)
	if got, want := r.Names(), []string{"echo", "node_info", "sleep", "version"}; !slices.Equal(got, want) {
		t.Errorf("after RegisterBuiltins, Names() = %v, want %v", got, want)
	}
}
