package tools

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
)

// noderpc call and wait exit right after their calls, long before a
// queued release would go out on its own: they send it before they exit,
// so that the node holds nothing of them once they are gone.
func TestCallAndWaitReleaseBeforeExit(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	noderpc := nodetest.Binary(t, noderpcPackage)
	// exits runs the noderpc binary with args and checks that the node
	// holds no finished call once it has exited: read once, not polled,
	// for the process is gone, and with it any release it had not sent.
	exits := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(noderpc, append(append([]string(nil), fast...), args...)...).CombinedOutput(); err != nil {
			t.Fatalf("noderpc %q: %v\n%s", args, err, out)
		}
		got, err := n.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if held := got["noded_calls_retained"]; held != 0 {
			t.Errorf("the node holds %v finished calls once noderpc %q has exited, want none", held, args)
		}
	}

	exits("call", n.Addr(), n.Addr(), "echo", "1")
	code, id, stderr := run(t, "", "start", "--timeout", "10s", n.Addr(), "echo", "2")
	if code != ExitOK {
		t.Fatalf("noderpc start = exit %d, %s", code, stderr)
	}
	exits("wait", n.Addr(), strings.TrimSpace(id))
	n.AwaitMetrics(t, map[string]float64{nodetest.ReleasedCalls: 3})
}
