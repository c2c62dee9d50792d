package noded_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckConfigFunctionsDir: a --functions-dir that exists but is no
// directory noded can read fails --check-config with exit 2 and says
// what it is; a missing one is fine (no executable functions yet).
func TestCheckConfigFunctionsDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "hello")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{file, "is a regular file, not a directory"},
		{fifo, "is a FIFO, not a directory"},
		{loop, "too many levels of symbolic links"},
	} {
		status, out := runNoded(t, "--config=", "--insecure", "--functions-dir", tc.dir, "--check-config")
		if status != 2 || !strings.Contains(out, "--functions-dir") || !strings.Contains(out, tc.want) {
			t.Errorf("--check-config with --functions-dir %s: exit %d, %s; want 2 saying %q", tc.dir, status, out, tc.want)
		}
	}
	for _, ok := range []string{dir, filepath.Join(dir, "missing")} {
		if status, out := runNoded(t, "--config=", "--insecure", "--functions-dir", ok, "--check-config"); status != 0 {
			t.Errorf("--check-config with --functions-dir %s: exit %d, %s; want 0", ok, status, out)
		}
	}
}
