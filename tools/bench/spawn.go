package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/jobs"
	"github.com/noderpc/noderpc/noded/functions"
	"github.com/noderpc/noderpc/rpc"
)

// spawner runs the spawn floor: the Go function process binary started
// as noded starts it (the cookie in its environment, "function FN" as its
// arguments), fed one request and greeted in noded's order (converse),
// read and reaped. It leaves out all that noded adds: HTTP, the job
// table, the stderr log reader, the process group and the parent-death
// signal.
type spawner struct {
	bin  string
	fn   string
	args []string // after the binary's name
	env  []string
	req  []byte // the request frame, newline included
	// ahead says the request goes in ahead of the hello, as noded writes
	// one whose arguments are small (jobs.MaxInlineFeed).
	ahead bool
}

// maxFloorResult bounds what the floor reads of a result, like noded's
// default --max-result.
const maxFloorResult = 16 << 20

func newSpawner(bin, fn string, args json.RawMessage) *spawner {
	id := rpc.NewCallID(os.Getpid(), os.Getpid(), time.Now()).String()
	// The request frame exactly as noded writes it.
	req, err := rpc.AppendFunctionRequest(nil, id, fn, args)
	if err != nil {
		// args is valid JSON (Run checks) and the rest are strings.
		panic(fmt.Sprintf("bench: encoding the spawn floor's request: %v", err))
	}
	s := &spawner{fn: fn, req: req, ahead: len(args) <= jobs.MaxInlineFeed}
	s.bin, s.args, s.env = functionProcess(bin, fn)
	return s
}

// functionProcess is how noded starts the Go function process of fn from
// its binary bin, from the daemon's own definition (functions.GoProcess):
// the program, its arguments after the program's name, and its
// environment on top of this process's.
func functionProcess(bin, fn string) (path string, args, env []string) {
	spec := functions.GoProcess(bin, "", functions.DefaultProcs)
	return spec.Path, append(spec.Args, fn), append(os.Environ(), spec.Env...)
}

// run is one spawn and wait; it is an op of runLoad.
func (s *spawner) run(int) (time.Duration, error) {
	start := time.Now()
	err := s.once()
	return time.Since(start), err
}

func (s *spawner) once() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = s.env
	// Plain pipes (no copying goroutines); stderr goes to /dev/null.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("spawn floor: %w", err)
	}
	res, err := s.converse(stdin, stdout)
	if err != nil {
		cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	switch {
	case err != nil:
		return fmt.Errorf("spawn floor: %s function %s: %w", s.bin, s.fn, err)
	case res.Error != nil:
		return fmt.Errorf("spawn floor: %s function %s: %w", s.bin, s.fn, res.Error)
	case waitErr != nil:
		return fmt.Errorf("spawn floor: %s function %s: %w", s.bin, s.fn, rpc.Errorf(rpc.KindFunctionFailed, "%v", waitErr))
	}
	return nil
}

// converse speaks the stdio protocol as noded does: the request, when
// its arguments are small (jobs.MaxInlineFeed), goes in ahead of the
// hello; the hello is read and checked; a larger request goes in after
// it; then the result is read.
func (s *spawner) converse(stdin io.WriteCloser, stdout io.Reader) (rpc.FunctionResult, error) {
	send := func() error {
		_, werr := stdin.Write(s.req)
		stdin.Close()
		if werr != nil {
			return rpc.Errorf(rpc.KindProtocolError, "writing the request: %v", werr)
		}
		return nil
	}
	if s.ahead {
		if err := send(); err != nil {
			return rpc.FunctionResult{}, err
		}
	}
	r := bufio.NewReader(stdout)
	line, err := r.ReadSlice('\n')
	if err != nil {
		stdin.Close()
		return rpc.FunctionResult{}, rpc.Errorf(rpc.KindProtocolError, "reading the hello: %v", err)
	}
	if _, err := rpc.DecodeHello(line); err != nil {
		stdin.Close()
		return rpc.FunctionResult{}, err
	}
	if !s.ahead {
		if err := send(); err != nil {
			return rpc.FunctionResult{}, err
		}
	}
	out, err := io.ReadAll(io.LimitReader(r, maxFloorResult))
	if err != nil {
		return rpc.FunctionResult{}, rpc.Errorf(rpc.KindProtocolError, "reading the result: %v", err)
	}
	return rpc.DecodeFunctionResult(out)
}
