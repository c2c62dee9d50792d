package rpc

// FunctionKind is how a node runs a function.
type FunctionKind string

// The kinds of function.
const (
	// FunctionBuiltin is a Go function every noded offers (echo, sleep,
	// version, node_info).
	FunctionBuiltin FunctionKind = "builtin"
	// FunctionGo is a Go function the noded binary registered itself.
	FunctionGo FunctionKind = "go"
	// FunctionExecutable is a file in the node's functions directory.
	FunctionExecutable FunctionKind = "executable"
)

// Function is one function in GET /ListFunctions.
type Function struct {
	// Name is what StartFunction's fn_name names.
	Name string `json:"name"`
	// Kind is how the node runs it.
	Kind FunctionKind `json:"kind"`
	// Runnable is false for a file in the functions directory that a
	// start would refuse or fail to execute; Problem says why.
	Runnable bool `json:"runnable"`
	// Problem says why the function is not runnable, and how to fix it.
	Problem string `json:"problem,omitempty"`
}

// ListFunctionsResponse is the answer of GET /ListFunctions.
type ListFunctionsResponse struct {
	// Functions are sorted by name; Go functions come before a file of
	// the same name, which they shadow.
	Functions []Function `json:"functions"`
	// FunctionsDir is the node's functions directory, empty if it has
	// none.
	FunctionsDir string `json:"functions_dir,omitempty"`
	// Calls is always CallsMoved. In protocol 1 this route listed calls
	// under this key; a master of protocol 1 decoding this answer meets a
	// string where it wants a list and fails with a protocol error,
	// instead of taking the answer for a node that holds no calls.
	Calls string `json:"calls"`
}

// CallsMoved is the value of ListFunctionsResponse.Calls.
const CallsMoved = "moved to GET " + PathListCalls + " in protocol 2"
