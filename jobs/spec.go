package jobs

// Protocol is how a function process talks over its stdio with the table.
type Protocol int

// Protocols of a function process.
const (
	// ProtocolRaw is an executable function's: the raw fn_args JSON on
	// stdin, the raw JSON result on stdout, nothing else.
	ProtocolRaw Protocol = iota
	// ProtocolFramed is a Go function process's: a hello line, then a
	// request frame on stdin and a result frame on stdout (rpc/frame.go).
	ProtocolFramed
)

// Spec says how to start the process for one function.
type Spec struct {
	// Name is the function's name.
	Name string
	// Path is the program to exec.
	Path string
	// Arg0 is argv[0], what ps shows and the process reads as its own
	// name; empty means Path. Path may be a /proc/self/fd link, whose
	// name says nothing to an operator.
	Arg0 string
	// Args is argv[1:]. For a Go function it only names the function in
	// ps output; the request frame is what the process obeys.
	Args []string
	// Env holds extra environment entries ("K=V") on top of the daemon's
	// own.
	Env []string
	// Protocol is what the process speaks on its stdio.
	Protocol Protocol
}

// Resolver finds out how to run a function by name. noded's is
// noded/functions; tests build their own.
type Resolver interface {
	// Resolve returns how to start the process for name, or an
	// *rpc.Error: bad_request for a name no function can have,
	// unknown_function for one this node does not offer.
	Resolve(name string) (Spec, error)
}
