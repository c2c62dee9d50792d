package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// framedScripts resolves names to shell scripts that speak the framed
// protocol, so a test can make a function process do what noded-fn never
// does; other names resolve as testFunctions does.
type framedScripts struct {
	*testFunctions
	scripts map[string]string // name: the script's body
}

func (f *framedScripts) Resolve(name string) (Spec, error) {
	body, ok := f.scripts[name]
	if !ok {
		return f.testFunctions.Resolve(name)
	}
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		return Spec{}, err
	}
	return Spec{Name: name, Path: path, Protocol: ProtocolFramed}, nil
}

// A new process gets a small request ahead of its hello: one that reads
// its request before it greets is served, its hello still checked. A
// process whose hello, read after the request, is not noded's protocol
// fails its call with protocol_error, and is killed. A large request
// still waits for the hello.
func TestRequestAheadOfHello(t *testing.T) {
	fns := &framedScripts{testFunctions: newFunctions(t), scripts: map[string]string{
		// The request's call ID, read before the hello, is the result.
		"readsfirst": `read -r req
id=${req#*\"call_id\":\"}; id=${id%%\"*}
echo '{"protocol":2,"pid":1}'
echo "{\"result\":\"$id\"}"
`,
		"badhello": `read -r req
echo '{"protocol":99}'
exec sleep 600
`,
		"greetsfirst": `echo '{"protocol":2,"pid":1}'
read -r req
echo "{\"result\":${#req}}"
`,
	}}
	tb := newTable(t, Config{Resolver: fns})

	c := start(t, tb, StartOptions{Fn: "readsfirst", Args: []byte(`{"a":1}`), Timeout: 10 * time.Second})
	if c.State != rpc.StateSucceeded || string(c.Result) != `"`+c.ID+`"` {
		t.Errorf("a process that reads its request before greeting: %+v, want succeeded with its call ID", c)
	}

	c = start(t, tb, StartOptions{Fn: "badhello", Args: []byte(`1`), Timeout: 10 * time.Second})
	if c.State != rpc.StateFailed || c.Error == nil || c.Error.Kind != rpc.KindProtocolError {
		t.Errorf("a process that greets with another protocol after its request: %+v, want failed protocol_error", c)
	}

	big := []byte(`"` + strings.Repeat("x", MaxInlineFeed+1) + `"`)
	c = start(t, tb, StartOptions{Fn: "greetsfirst", Args: big, Timeout: 10 * time.Second})
	if c.State != rpc.StateSucceeded || c.Result == nil {
		t.Errorf("a large request to a process that greets first: %+v, want succeeded", c)
	}
}
