package backend_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWireImportsLittle: the function binary links neither the daemon
// nor the packages whose initialisation and size made every call's
// process start slowly (go-json among them: see wire.Codec). Go initialises every package a program links, whatever runs,
// so an import added here is paid by every call.
func TestWireImportsLittle(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/noderpc/noderpc/noded/cmd/noded-fn").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		switch {
		case dep == "net", dep == "net/http", dep == "net/url", dep == "crypto/x509", dep == "crypto/tls",
			dep == "github.com/noderpc/noderpc/rpc", strings.HasPrefix(dep, "github.com/valyala/"),
			strings.HasPrefix(dep, "github.com/goccy/"),
			strings.HasPrefix(dep, "github.com/noderpc/noderpc/noded/") && dep != "github.com/noderpc/noderpc/noded/cmd/noded-fn", strings.HasPrefix(dep, "github.com/noderpc/noderpc/jobs"):
			t.Errorf("noded-fn links %s", dep)
		}
	}
	if len(deps) > 90 {
		t.Errorf("noded-fn links %d packages, want at most 90 (79 when this limit was set)", len(deps))
	}
}
