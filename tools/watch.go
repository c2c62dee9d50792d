package tools

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/noderpc/noderpc/master"
)

// watcher shows calls in progress. On a terminal it keeps a status line
// with the elapsed time at the bottom, redrawn, and prints log lines above
// it; otherwise it prints the log lines to stderr as they arrive; with
// --json it prints nothing and keeps the lines for the output.
type watcher struct {
	a     *app
	label string
	multi bool
	start time.Time

	mu     sync.Mutex
	logs   map[string][]string // with --json
	next   map[string]int      // per node, the number of the next line expected
	shown  bool                // the status line is on screen
	ticker *time.Ticker
	done   chan struct{}
	wg     sync.WaitGroup
}

// statusEvery is how often the elapsed time is redrawn.
const statusEvery = 100 * time.Millisecond

// watch starts watching what on nodes.
func (a *app) watch(what string, nodes []string) *watcher {
	w := &watcher{a: a, multi: len(nodes) > 1, start: time.Now(), logs: map[string][]string{}, next: map[string]int{}, done: make(chan struct{})}
	if w.multi {
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
					w.drawStatus()
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
		w.logs[l.Node] = append(w.logs[l.Node], l.Text)
		return
	}
	out := w.a.stderr
	if w.a.tty {
		out = w.a.stdout
		w.clearStatus()
	}
	prefix := ""
	if w.multi {
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

// lines returns the log lines kept for node (with --json).
func (w *watcher) lines(node string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs[node]
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
	w.clearStatus()
}

// drawStatus rewrites the status line; w.mu is held.
func (w *watcher) drawStatus() {
	elapsed := time.Since(w.start).Truncate(statusEvery)
	fmt.Fprintf(w.a.stdout, "\r\x1b[K… %s: %s", w.label, elapsed)
	w.shown = true
}

// clearStatus erases the status line; w.mu is held.
func (w *watcher) clearStatus() {
	if w.shown {
		io.WriteString(w.a.stdout, "\r\x1b[K")
		w.shown = false
	}
}
