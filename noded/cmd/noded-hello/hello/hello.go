// Package hello holds the functions of the example noded-hello: the
// builtins and hello. Its two programs register them from here, so that
// the daemon (noded/cmd/noded-hello) and its function binary
// (noded/cmd/noded-hello-fn) cannot disagree on them.
package hello

import (
	"context"
	"errors"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/backend"
)

// Register adds the builtins and hello to reg.
func Register(reg *backend.Registry) {
	backend.RegisterBuiltins(reg)
	reg.Register("hello", Hello)
}

// Args are hello's arguments.
type Args struct {
	Name string `json:"name"`
}

// Hello greets its caller by name, and logs that it did.
func Hello(ctx context.Context, args json.RawMessage) (any, error) {
	var a Args
	if err := backend.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, errors.New(`hello needs {"name": "..."}`)
	}
	backend.Logger(ctx).Info("greeting", "name", a.Name)
	return map[string]string{"greeting": "hello, " + a.Name}, nil
}
