package masterd

import (
	"slices"

	"github.com/noderpc/noderpc/rpc"
)

// Bounds on what a hello reports of the node's functions and calls,
// which masterd keeps in the node's record, writes whole at every hello
// and lists (the functions) in every ListNodes. Past them masterd clips
// rather than refuses, as it escapes rather than refuses (rpc.EscapeText):
// a call's request ID is its caller's and a function's name a file's, and
// the number of calls a node holds grows with its load, so refusing
// would let a caller, a file or a busy hour keep the node out of the
// group. doc/membership.md gives the reasons for each number.
const (
	// maxReportedFunctions bounds the functions kept: a node's Go
	// functions and the files of one directory, far fewer in any
	// ordinary node.
	maxReportedFunctions = 1000
	// maxReportedCalls bounds the calls kept of one hello: twice the
	// 10,000 running calls of a busy node, so that such a node keeps
	// them all and as many finished ones (noded holds a finished call
	// until it is released, or for --retention).
	maxReportedCalls = 20000
	// maxReportedText bounds, in bytes once escaped, a function's name
	// and kind and a call's id, function name, state, request ID and
	// error kind: four times the longest name (255 bytes) or request ID
	// (rpc.MaxRequestIDLen) noded takes, so that none is clipped even
	// with every byte escaped as \xNN.
	maxReportedText = 4 * rpc.MaxRequestIDLen
	// maxReportedProblem bounds a function's problem, a sentence that
	// names the file and, for a script, its interpreter.
	maxReportedProblem = 2048
)

// cuts counts what bounding a node's report left out, for the log.
type cuts struct {
	functions int // functions dropped
	calls     int // calls dropped
	texts     int // strings clipped
}

func (c cuts) any() bool { return c != cuts{} }

// logAttrs are c as log attributes.
func (c cuts) logAttrs() []any {
	return []any{"functions_dropped", c.functions, "calls_dropped", c.calls, "strings_clipped", c.texts}
}

// boundReported escapes and bounds what req reports of the node's
// functions and calls, and returns what it left out.
func boundReported(req *rpc.HelloRequest) cuts {
	req.EscapeReported()
	var c cuts
	req.Functions = boundFunctions(req.Functions, &c)
	req.Calls = boundCalls(req.Calls, maxReportedCalls, func(s *rpc.CallSummary) *rpc.CallSummary { return s }, &c)
	return c
}

// boundFunctions keeps the first maxReportedFunctions of fns (noded lists
// them by name) and clips their strings.
func boundFunctions(fns []rpc.Function, c *cuts) []rpc.Function {
	if len(fns) > maxReportedFunctions {
		c.functions += len(fns) - maxReportedFunctions
		// A copy, so that the dropped ones are not kept alive.
		fns = slices.Clone(fns[:maxReportedFunctions])
	}
	for i := range fns {
		f := &fns[i]
		f.Name = c.clip(f.Name, maxReportedText)
		f.Kind = rpc.FunctionKind(c.clip(string(f.Kind), maxReportedText))
		f.Problem = c.clip(f.Problem, maxReportedProblem)
	}
	return fns
}

// boundCalls keeps at most limit of calls, whose summaries sum returns,
// and clips their strings. The calls not finished come first, as their
// loss is what a new boot of the node reports (the oldest, if even they
// are too many); then the finished ones listed last, which noded lists
// oldest first: the most recent.
func boundCalls[C any](calls []C, limit int, sum func(*C) *rpc.CallSummary, c *cuts) []C {
	if len(calls) > limit {
		unfinished := 0
		for i := range calls {
			if !sum(&calls[i]).State.Finished() {
				unfinished++
			}
		}
		keepUnfinished := min(unfinished, limit)
		skipFinished := len(calls) - unfinished - (limit - keepUnfinished)
		kept := make([]C, 0, limit)
		for i := range calls {
			if sum(&calls[i]).State.Finished() {
				if skipFinished > 0 {
					skipFinished--
					continue
				}
			} else {
				if keepUnfinished == 0 {
					continue
				}
				keepUnfinished--
			}
			kept = append(kept, calls[i])
		}
		c.calls += len(calls) - len(kept)
		calls = kept
	}
	for i := range calls {
		s := sum(&calls[i])
		s.ID, s.FnName, s.RequestID = c.clip(s.ID, maxReportedText), c.clip(s.FnName, maxReportedText), c.clip(s.RequestID, maxReportedText)
		s.State = rpc.State(c.clip(string(s.State), maxReportedText))
		s.ErrorKind = rpc.Kind(c.clip(string(s.ErrorKind), maxReportedText))
	}
	return calls
}

// repairReported holds what the stored record n holds of the node's
// functions and calls to the rules of a hello: escaped, and bounded as a
// hello's and its lost calls are.
func repairReported(n *rpc.Node) cuts {
	sums := make([]rpc.CallSummary, len(n.Calls))
	for i := range n.Calls {
		sums[i] = n.Calls[i].CallSummary
	}
	// The escape of a hello, whose rules are rpc's.
	req := rpc.HelloRequest{Functions: n.Functions, Calls: sums}
	req.EscapeReported()
	var lost, current []rpc.NodeCall
	for i := range n.Calls {
		call := n.Calls[i]
		call.CallSummary = sums[i]
		if call.Lost {
			lost = append(lost, call)
		} else {
			current = append(current, call)
		}
	}
	var c cuts
	n.Functions = boundFunctions(req.Functions, &c)
	if len(lost) > maxLostCalls {
		// As earlierCalls keeps them: the most recently lost.
		c.calls += len(lost) - maxLostCalls
		lost = lost[len(lost)-maxLostCalls:]
	}
	sum := func(nc *rpc.NodeCall) *rpc.CallSummary { return &nc.CallSummary }
	lost = boundCalls(lost, maxLostCalls, sum, &c) // clips their strings
	current = boundCalls(current, maxReportedCalls, sum, &c)
	if len(n.Calls) > 0 {
		n.Calls = slices.Concat(lost, current)
	}
	return c
}

// clip is rpc.Clip within n bytes, its mark included, counting in c
// what it clipped. rpc.Clip's result is a new string, so a clipped
// string of a large input does not keep the input alive.
func (c *cuts) clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	c.texts++
	return rpc.Clip(s, n-len(clipMark))
}

// clipMark is the mark rpc.Clip ends a clipped string with.
const clipMark = "..."
