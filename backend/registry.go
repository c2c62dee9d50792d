package backend

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/noderpc/noderpc/rpc/wire"
)

// MaxNameLen bounds a function name. Executable functions are files named
// after the function, and Linux refuses file names longer than this.
const MaxNameLen = 255

// Registry maps names to Go functions. It is safe for concurrent use,
// though programs normally fill it once in main before serving.
type Registry struct {
	mu    sync.RWMutex
	funcs map[string]Func
	// builtins are the names RegisterBuiltins added, which a node's
	// function list tells apart from the program's own.
	builtins map[string]bool
}

// NewRegistry returns an empty registry. It holds no builtins until
// RegisterBuiltins adds them, so a program chooses what its nodes offer.
func NewRegistry() *Registry {
	return &Registry{funcs: make(map[string]Func), builtins: make(map[string]bool)}
}

// Register adds fn under name. Like http.Handle it panics on an invalid
// name, a nil fn, or a name already registered: those are mistakes in the
// program, and failing at start-up beats a node that silently runs the
// wrong function.
func (r *Registry) Register(name string, fn Func) {
	r.register(name, fn, false)
}

func (r *Registry) register(name string, fn Func, builtin bool) {
	if err := CheckName(name); err != nil {
		panic("backend: Register: " + err.Error())
	}
	if fn == nil {
		panic(fmt.Sprintf("backend: Register: nil function for %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.funcs[name]; dup {
		panic(fmt.Sprintf("backend: Register: function %q registered twice", name))
	}
	r.funcs[name] = fn
	if builtin {
		r.builtins[name] = true
	}
}

// Builtin reports whether name was registered by RegisterBuiltins.
func (r *Registry) Builtin(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.builtins[name]
}

// Lookup returns the function registered under name.
func (r *Registry) Lookup(name string) (Func, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn, ok := r.funcs[name]
	return fn, ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.funcs))
	for name := range r.funcs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// CheckName reports a bad_request error if name cannot name a function.
// A valid name is 1 to MaxNameLen bytes of [A-Za-z0-9_.-], does not start
// with '.' and does not contain "..". The same rule holds for Go and
// executable functions because a name from the network becomes a file
// name in the functions directory: this rule is what keeps it there.
func CheckName(name string) error {
	switch {
	case name == "":
		return wire.Errorf(wire.KindBadRequest, "function name is empty")
	case len(name) > MaxNameLen:
		return wire.Errorf(wire.KindBadRequest, "function name is longer than %d bytes", MaxNameLen)
	case name[0] == '.':
		return wire.Errorf(wire.KindBadRequest, "function name %q starts with '.'", name)
	case strings.Contains(name, ".."):
		return wire.Errorf(wire.KindBadRequest, "function name %q contains \"..\"", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return wire.Errorf(wire.KindBadRequest, "function name %q has a character outside [A-Za-z0-9_.-]", name)
		}
	}
	return nil
}
