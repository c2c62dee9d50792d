package bench

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"
)

// liner runs the line floor: one request line into a process of the
// minimal floor binary that was started earlier, has greeted and sits
// idle on its stdin, and its first line back. It is what a warm call
// cannot go below: waking an idle process for one line, with no start,
// no decode and no function. Processes are started ahead, one per
// caller and one more, and each serves one line, as a warm pool's do;
// replacements start after the line, off the measured part.
type liner struct {
	s     *spawner
	ready chan *idleProc
	wg    sync.WaitGroup // the replacements and reaps in flight
}

// idleProc is a started, greeted process waiting for its line.
type idleProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	err   error // starting it failed
}

// newLiner starts n processes of s's binary for the line floor.
func newLiner(s *spawner, n int) *liner {
	l := &liner{s: s, ready: make(chan *idleProc, n)}
	for range n {
		l.replace()
	}
	return l
}

// replace starts a process in the background and queues it once greeted.
func (l *liner) replace() {
	l.wg.Go(func() { l.ready <- l.start() })
}

func (l *liner) start() *idleProc {
	cmd := exec.Command(l.s.bin, l.s.args...)
	cmd.Env = l.s.env
	p := &idleProc{cmd: cmd}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return &idleProc{err: err}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return &idleProc{err: err}
	}
	if err := cmd.Start(); err != nil {
		return &idleProc{err: fmt.Errorf("line floor: %w", err)}
	}
	p.stdin, p.out = stdin, bufio.NewReader(stdout)
	if _, err := p.out.ReadSlice('\n'); err != nil {
		p.err = fmt.Errorf("line floor: %s wrote no hello: %w", l.s.bin, err)
	}
	return p
}

// run is one line through an idle process; it is an op of runLoad.
func (l *liner) run(int) (time.Duration, error) {
	p := <-l.ready
	if p.err != nil {
		l.reap(p)
		return 0, p.err
	}
	start := time.Now()
	_, err := p.stdin.Write(l.s.req)
	if err == nil {
		_, err = p.out.ReadSlice('\n')
	}
	took := time.Since(start)
	l.reap(p)
	if err != nil {
		return took, fmt.Errorf("line floor: %s: %w", l.s.bin, err)
	}
	return took, nil
}

// reap ends p in the background and starts its replacement.
func (l *liner) reap(p *idleProc) {
	l.wg.Go(func() {
		if p.cmd != nil && p.cmd.Process != nil {
			p.stdin.Close()
			io.Copy(io.Discard, p.out)
			p.cmd.Wait()
		}
	})
	l.replace()
}

// close kills the processes still waiting and reaps them all.
func (l *liner) close() {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	for {
		select {
		case p := <-l.ready:
			if p.cmd != nil && p.cmd.Process != nil {
				p.cmd.Process.Kill()
				p.stdin.Close()
				p.cmd.Wait()
			}
		case <-done:
			// Every start has queued its process and the queue is
			// empty: none is left.
			if len(l.ready) == 0 {
				return
			}
		}
	}
}
