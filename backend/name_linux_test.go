package backend

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestFunctionProcessNamed: a function process names itself after its
// argv[0] (the kernel keeps 15 bytes of a name), as ps and top show it,
// whichever file it was executed from; a process without the function
// cookie keeps the kernel's name.
func TestFunctionProcessNamed(t *testing.T) {
	for _, tt := range []struct {
		cookie bool
		want   string
	}{
		{true, "another-long-fu"},
		{false, filepath.Base(os.Args[0])[:min(len(filepath.Base(os.Args[0])), 15)]},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Args[0] = "/usr/libexec/noderpc/another-long-function-binary"
		cmd.Env = append(os.Environ(), helperEnv+"=comm")
		if tt.cookie {
			cmd.Env = append(cmd.Env, rpc.FunctionCookieKey+"="+rpc.FunctionCookieValue)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != tt.want {
			t.Errorf("a process with the cookie %v is named %q, want %q", tt.cookie, got, tt.want)
		}
	}
}
