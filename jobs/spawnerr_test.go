package jobs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// TestSpawnErrorOfAFIFODoesNotBlock: a function file replaced by a FIFO
// between its check and its exec fails exec with EACCES; saying why must
// not wait, in an open of the FIFO, for a writer that never comes.
func TestSpawnErrorOfAFIFODoesNotBlock(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "f")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan *rpc.Error, 1)
	go func() { done <- spawnError("f", fifo, &os.PathError{Op: "fork/exec", Path: fifo, Err: syscall.EACCES}) }()
	select {
	case got := <-done:
		if got.Kind != rpc.KindUnknownFunction {
			t.Errorf("spawnError of a FIFO refused with EACCES = %v, want unknown_function", got)
		}
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close() // lets the blocked open end with the test
		}
		t.Fatal("spawnError of a FIFO still blocks after 10s")
	}
}
