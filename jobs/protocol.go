package jobs

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"time"

	"github.com/goccy/go-json"

	"github.com/noderpc/noderpc/rpc"
)

// childProtocol is one way of talking to a function process over its
// stdio: how the call's request goes in and how its result comes out.
// The supervisor drives it; decide judges what it read.
type childProtocol interface {
	// greet reads and checks what the process says before its result
	// (a Go function process's hello), unless it was read already (a
	// warm process). An error is a protocol error that fails the call;
	// the process is killed then.
	greet(p *process) *rpc.Error
	// send hands the call's request to the process and closes its
	// stdin. An error fails the call.
	send(c *call, args json.RawMessage) *rpc.Error
	// read reads the process's stdout to its end, keeping at most limit+1
	// bytes: more than limit is too much. A result that can settle the
	// call before the process exits is also sent on early, once.
	read(r *bufio.Reader, limit int64, early chan<- []byte) []byte
	// overhead is what the protocol adds around a result, which the
	// function does not pay for out of the result limit.
	overhead() int64
	// decode takes the result out of what the process wrote. fnErr is
	// the error the function itself reported; protoErr says the output
	// is not what the protocol asks for.
	decode(out []byte) (result json.RawMessage, fnErr, protoErr *rpc.Error)
}

var (
	_ childProtocol = framedProtocol{}
	_ childProtocol = rawProtocol{}
)

// protocolOf returns the implementation of p.
func protocolOf(p Protocol) childProtocol {
	if p == ProtocolFramed {
		return framedProtocol{}
	}
	return rawProtocol{}
}

// frameOverhead is what a result frame adds around the result itself:
// {"result":...} and a newline, with room to spare.
const frameOverhead = 64

// maxHelloLine bounds the hello line a function process writes first.
const maxHelloLine = 4096

// framedProtocol is a Go function process's: it greets with a hello line,
// reads one request frame and writes one result frame, a single line.
type framedProtocol struct{}

func (framedProtocol) greet(p *process) *rpc.Error {
	if p.greeted {
		return nil
	}
	if err := readHello(p, 0); err != nil {
		p.stdin.Close()
		p.kill()
		return err
	}
	return nil
}

// readHello reads and checks the hello line of p, within the given time
// when it is above 0, and marks p greeted. The error, a protocol_error,
// says what came instead.
func readHello(p *process, within time.Duration) *rpc.Error {
	if within > 0 {
		p.stdout.SetReadDeadline(time.Now().Add(within))
		defer p.stdout.SetReadDeadline(time.Time{})
	}
	line, err := p.out.ReadSlice('\n')
	switch {
	case err == nil:
		if _, err := rpc.DecodeHello(line); err != nil {
			return err.(*rpc.Error)
		}
		p.greeted = true
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return rpc.Errorf(rpc.KindProtocolError, "function process did not greet within %v", within)
	case len(line) == 0:
		return rpc.Errorf(rpc.KindProtocolError, "function process exited before its protocol hello")
	}
	return rpc.Errorf(rpc.KindProtocolError, "function process did not finish its protocol hello line: %q", rpc.ClipBytes(line, 120))
}

func (framedProtocol) send(c *call, args json.RawMessage) *rpc.Error {
	p := c.proc
	req, err := rpc.AppendFunctionRequest(nil, c.id, c.fnName, args)
	if err != nil {
		p.stdin.Close()
		p.kill()
		return rpc.Errorf(rpc.KindInternal, "encoding the function request: %v", err)
	}
	p.stdin.Write(req) // a process that exits early is seen by its wait
	p.stdin.Close()
	return nil
}

// read hands the result frame over the moment its line is whole, then
// reads on to the end so the process never blocks on a full pipe.
func (framedProtocol) read(r *bufio.Reader, limit int64, early chan<- []byte) []byte {
	var buf bytes.Buffer
	for {
		chunk, err := r.ReadSlice('\n')
		buf.Write(chunk)
		if int64(buf.Len()) > limit {
			break
		}
		if err == nil {
			early <- bytes.Clone(buf.Bytes())
			break
		}
		if err != bufio.ErrBufferFull {
			break
		}
	}
	rest, _ := io.ReadAll(io.LimitReader(r, limit+1-int64(buf.Len())))
	return append(buf.Bytes(), rest...)
}

func (framedProtocol) overhead() int64 { return frameOverhead }

func (framedProtocol) decode(out []byte) (json.RawMessage, *rpc.Error, *rpc.Error) {
	fr, err := rpc.DecodeFunctionResult(out)
	if err != nil {
		return nil, nil, err.(*rpc.Error)
	}
	return fr.Result, fr.Error, nil
}

// rawProtocol is an executable function's: fn_args in on stdin, the JSON
// result out on stdout, and no frames around either.
type rawProtocol struct{}

// greet has nothing to read: an executable says nothing before its result.
func (rawProtocol) greet(*process) *rpc.Error { return nil }

// send writes args at once when they are small (MaxInlineFeed: the
// write cannot wait), and otherwise in the background: an executable
// function may exit without reading its stdin, and a write error then is
// its business, not a failure of noded.
func (rawProtocol) send(c *call, args json.RawMessage) *rpc.Error {
	p := c.proc
	if len(args) == 0 {
		args = json.RawMessage("null")
	}
	write := func() {
		p.stdin.Write(args)
		p.stdin.Close()
	}
	if len(args) <= MaxInlineFeed {
		write()
	} else {
		go write()
	}
	return nil
}

// read has nothing early: only the end of stdout ends a raw result.
func (rawProtocol) read(r *bufio.Reader, limit int64, _ chan<- []byte) []byte {
	data, _ := io.ReadAll(io.LimitReader(r, limit+1))
	return data
}

func (rawProtocol) overhead() int64 { return 0 }

func (rawProtocol) decode(out []byte) (json.RawMessage, *rpc.Error, *rpc.Error) {
	raw := bytes.TrimSpace(out)
	if err := rpc.ValidResult(raw); err != nil {
		return nil, nil, err.(*rpc.Error)
	}
	return raw, nil, nil
}
