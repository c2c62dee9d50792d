//go:build fault

package faults

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
)

// long selects the long run: more rounds and more load per scenario.
var long = flag.Bool("long", false, "run the long fault suite (also NODERPC_FAULT_LONG=1)")

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("NODERPC_FAULT_LONG") == "1" {
		*long = true
	}
	code := nodetest.Run(m)
	printSummary()
	os.Exit(code)
}

// scale is how much load a scenario puts on noded.
type scale struct {
	rounds      int // rounds of load, each followed by an idle measurement
	calls       int // StartFunction calls issued per round
	concurrency int // calls in flight at once
}

// pick returns short in the default run and long with -long.
func pick(short, longRun scale) scale {
	if *long {
		return longRun
	}
	return short
}

// row is one line of the summary table of doc/reliability.md.
type row struct {
	scenario string
	calls    int    // StartFunction calls the load issued
	faults   string // what was injected, and how often
	outcomes string // terminal outcomes the client saw
	dups     int    // calls that ran twice on one daemon (must be 0)
	reruns   int    // starts in flight across a restart that ran again on the new daemon (documented gap)
	left     int    // processes with the scenario's marker left running (must be 0)
	zombies  int    // recorded function processes left as zombies (not running; reaped by PID 1, if ever)
	idle     string // noded's file descriptors, threads, goroutines and RSS by round
}

var (
	summaryMu sync.Mutex
	summary   []row
)

// report logs r and keeps it for the table printed after the run.
func report(t *testing.T, r row) {
	t.Helper()
	summaryMu.Lock()
	summary = append(summary, r)
	summaryMu.Unlock()
	t.Logf("summary: calls=%d faults=[%s] outcomes=[%s] duplicates=%d reruns-after-restart=%d leftovers=%d zombies=%d idle=[%s]",
		r.calls, r.faults, r.outcomes, r.dups, r.reruns, r.left, r.zombies, r.idle)
}

// printSummary writes the table of every scenario that ran, in the
// Markdown of doc/reliability.md.
func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nfault suite summary (long=%v):\n\n", *long)
	b.WriteString("| scenario | calls | faults injected | outcomes | ran twice | reruns after restart | leftovers | zombies | noded when idle (fds / threads / goroutines / RSS) |\n")
	b.WriteString("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range summary {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %d | %d | %d | %s |\n",
			r.scenario, r.calls, r.faults, r.outcomes, r.dups, r.reruns, r.left, r.zombies, r.idle)
	}
	fmt.Print(b.String())
}
