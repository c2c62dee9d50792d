package tools

import (
	"os/exec"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
)

// noderpc call and wait exit right after their calls, long before a
// queued release would go out on its own: they send it before they exit,
// so that the node holds nothing of them once they are gone.
func TestCallAndWaitReleaseBeforeExit(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	noderpc := nodetest.Binary(t, noderpcPackage)
	for _, args := range [][]string{
		{"call", n.Addr(), n.Addr(), "echo", "1"},
		{"wait", n.Addr(), ""}, // the ID of a start, below
	} {
		if args[0] == "wait" {
			out, err := exec.Command(noderpc, append(append([]string(nil), fast...), "start", "--timeout", "10s", n.Addr(), "echo", "2")...).Output()
			if err != nil {
				t.Fatalf("noderpc start: %v", err)
			}
			args[2] = string(out[:len(out)-1])
		}
		if out, err := exec.Command(noderpc, append(append([]string(nil), fast...), args...)...).CombinedOutput(); err != nil {
			t.Fatalf("noderpc %q: %v\n%s", args, err, out)
		}
		// Read once, not polled: the process is gone, and with it any
		// release it had not sent.
		got, err := n.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if held := got["noded_calls_retained"]; held != 0 {
			t.Errorf("the node holds %v finished calls once noderpc %q has exited, want none", held, args)
		}
	}
	n.AwaitMetrics(t, map[string]float64{`noded_calls_dropped_total{reason="released"}`: 3})
}
