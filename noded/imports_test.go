package noded_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoEtcdInNoded: no binary of noded's (the daemon, the function
// process, the examples) links the etcd client or its gRPC, which only
// masterd needs (doc/design.md, "etcd"). A node runs on every machine
// of the cluster and starts a process per call: what it links, every
// node pays for, in size and in start-up.
func TestNoEtcdInNoded(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "github.com/noderpc/noderpc/noded/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	bins := 0
	for line := range strings.Lines(string(out)) {
		deps := strings.Fields(line)
		bins++
		for _, dep := range deps[1:] {
			if strings.HasPrefix(dep, "go.etcd.io/") || strings.HasPrefix(dep, "google.golang.org/grpc") {
				t.Errorf("%s links %s", deps[0], dep)
			}
		}
	}
	if bins < 2 {
		t.Fatalf("go list found %d binaries under noded/cmd, want noded and noded-fn at least:\n%s", bins, out)
	}
}
