package tools

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/noderpc/noderpc/master"
)

// watcher shows calls in progress. On a terminal it keeps a status line
// with the elapsed time at the bottom, redrawn, and prints log lines and
// the nodes' results above it; otherwise it prints the log lines to
// stderr as they arrive; with --json it prints nothing and keeps the
// lines for the output.
type watcher struct {
	a     *app
	label string
	nodes int
	start time.Time

	mu      sync.Mutex
	logs    map[string]*keptLog // with --json, per node not yet landed
	next    map[string]int      // per node, the number of the next line expected
	landed  int                 // nodes whose result is out
	shown   bool                // the status line is on screen
	stopped bool
	ticker  *time.Ticker
	done    chan struct{}
	wg      sync.WaitGroup
}

// keptLog is the log lines of one node kept for --json: the last
// keptLogLines of them, so that a call that logs for hours costs no
// more than a node holds of it.
type keptLog struct {
	lines   []string
	dropped int
}

// keptLogLines is how many log lines of a node --json keeps: what a
// noded with default limits holds of a call (jobs.DefaultMaxLogLines).
const keptLogLines = 1000

func (k *keptLog) add(line string) {
	k.lines = append(k.lines, line)
	if len(k.lines) >= 2*keptLogLines {
		// Sliding by half the buffer at a time keeps adding cheap.
		k.dropped += len(k.lines) - keptLogLines
		k.lines = append(k.lines[:0], k.lines[len(k.lines)-keptLogLines:]...)
	}
}

// last returns the kept lines and how many earlier ones were dropped.
func (k *keptLog) last() ([]string, int) {
	if k == nil {
		return nil, 0
	}
	if over := len(k.lines) - keptLogLines; over > 0 {
		return k.lines[over:], k.dropped + over
	}
	return k.lines, k.dropped
}

// statusEvery is how often the elapsed time is redrawn.
const statusEvery = 100 * time.Millisecond

// watch starts watching what on nodes.
func (a *app) watch(what string, nodes []string) *watcher {
	w := &watcher{a: a, nodes: len(nodes), start: time.Now(), logs: map[string]*keptLog{}, next: map[string]int{}, done: make(chan struct{})}
	if w.nodes > 1 {
		w.label = fmt.Sprintf("%s on %d nodes", what, len(nodes))
	} else {
		w.label = fmt.Sprintf("%s on %s", what, nodes[0])
	}
	if a.tty && !a.json {
		w.ticker = time.NewTicker(statusEvery)
		w.wg.Go(func() {
			for {
				select {
				case <-w.ticker.C:
					w.mu.Lock()
					if w.landed < w.nodes {
						w.drawStatus()
					}
					w.mu.Unlock()
				case <-w.done:
					return
				}
			}
		})
	}
	return w
}

// log takes one log line; it is master.CallOptions.OnLog.
func (w *watcher) log(l master.LogLine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.a.json {
		k := w.logs[l.Node]
		if k == nil {
			k = &keptLog{}
			w.logs[l.Node] = k
		}
		k.add(l.Text)
		return
	}
	out := w.a.stderr
	if w.a.tty {
		out = w.a.stdout
		w.clearStatus()
	}
	prefix := ""
	if w.nodes > 1 {
		prefix = l.Node + ": "
	}
	if skipped := l.N - w.next[l.Node]; skipped > 0 {
		fmt.Fprintf(out, "%s(%d log lines no longer held by the node)\n", prefix, skipped)
	}
	w.next[l.Node] = l.N + 1
	fmt.Fprintf(out, "%s%s\n", prefix, l.Text)
	if w.a.tty {
		w.drawStatus()
	}
}

// land prints a node's result with print, which gets the log lines kept
// for the node (with --json) and how many earlier ones were dropped. On
// a terminal the status line is erased first and, while other nodes
// still run, redrawn below the result.
func (w *watcher) land(node string, print func(log []string, dropped int)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clearStatus()
	lines, dropped := w.logs[node].last()
	delete(w.logs, node)
	print(lines, dropped)
	w.landed++
	if w.ticker != nil && !w.stopped && w.landed < w.nodes {
		w.drawStatus()
	}
}

// stop ends the status line.
func (w *watcher) stop() {
	if w.ticker == nil {
		return
	}
	w.ticker.Stop()
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.clearStatus()
}

// drawStatus rewrites the status line; w.mu is held.
func (w *watcher) drawStatus() {
	elapsed := time.Since(w.start).Truncate(statusEvery)
	progress := ""
	if w.nodes > 1 && w.landed > 0 {
		progress = fmt.Sprintf(", %d done", w.landed)
	}
	fmt.Fprintf(w.a.stdout, "\r\x1b[K… %s%s: %s", w.label, progress, elapsed)
	w.shown = true
}

// clearStatus erases the status line; w.mu is held.
func (w *watcher) clearStatus() {
	if w.shown {
		io.WriteString(w.a.stdout, "\r\x1b[K")
		w.shown = false
	}
}
