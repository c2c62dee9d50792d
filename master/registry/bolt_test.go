package registry

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

func openT(t *testing.T, dir string) *Bolt {
	t.Helper()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatalf("OpenBolt(%s): %v", dir, err)
	}
	return s
}

func node(name, boot string, state rpc.NodeState) rpc.Node {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return rpc.Node{Name: name, State: state, URL: "http://127.0.0.1:1811", BootID: boot, Joined: at, LastContact: at,
		Version: "v1", Protocol: 1, SessionTimeout: 10, Functions: []rpc.Function{{Name: "echo", Kind: rpc.FunctionBuiltin, Runnable: true}},
		Calls: []rpc.NodeCall{{CallSummary: rpc.CallSummary{ID: "c1", FnName: "echo", State: rpc.StateRunning, StartedAt: at}, Lost: true}}}
}

// TestReopenKeepsEverything writes every kind of change, closes the
// store and checks that a new one over the same file reads it all back.
func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	changes := []Change{
		{Version: 1, Nodes: []Record{{Node: node("a", "b1", rpc.NodeUp), Version: 1}}},
		{Version: 2, Nodes: []Record{{Node: node("b", "b2", rpc.NodeUp), Version: 2}}},
		{Config: &ConfigChange{Entry: Entry{Keys: rpc.Config{"k": []byte(`1`)}, Stamp: 1}}},
		{Config: &ConfigChange{Node: "never-joined", Entry: Entry{Keys: rpc.Config{"k": []byte(`"x"`)}, Stamp: 2}}},
		{Version: 3, Nodes: []Record{{Node: node("a", "b1", rpc.NodeDown), Version: 3}}},
		{Masters: []string{"https://m1:1812", "https://m2:1812"}},
	}
	for _, c := range changes {
		if err := s.Write(c); err != nil {
			t.Fatalf("Write(%+v): %v", c, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{
		Version: 3, Stamp: 2,
		Nodes:   map[string]Record{"a": {Node: node("a", "b1", rpc.NodeDown), Version: 3}, "b": {Node: node("b", "b2", rpc.NodeUp), Version: 2}},
		Group:   Entry{Keys: rpc.Config{"k": []byte(`1`)}, Stamp: 1},
		Configs: map[string]Entry{"never-joined": {Keys: rpc.Config{"k": []byte(`"x"`)}, Stamp: 2}},
		Masters: []string{"https://m1:1812", "https://m2:1812"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load after reopen =\n%+v\nwant\n%+v", got, want)
	}
}

// TestOpenLocked checks that a second store over a held file is refused
// with ErrLocked, not left waiting.
func TestOpenLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	dir := t.TempDir()
	s := openT(t, dir)
	defer s.Close()
	if _, err := OpenBolt(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenBolt of a held store = %v, want ErrLocked", err)
	}
}

// TestWriteAfterClose checks the error of a store used after Close.
func TestWriteAfterClose(t *testing.T) {
	s := openT(t, t.TempDir())
	s.Close()
	if err := s.Write(Change{Version: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}
