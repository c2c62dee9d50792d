// Package master is the client a master daemon links to run functions on
// the nodes of a cluster through noded, without ever letting a slow or dead
// node block it.
//
// A [Client] talks to one node. Its methods are the procedures of the
// protocol (StartFunction, WaitForFunction, CancelFunction,
// ReleaseFunction, ListFunctions, ListCalls, Version), each bounded in time: every
// HTTP request has a deadline of [Options.Timeout] (the socket timeout),
// and a procedure that asks the node to wait asks it for at most half of
// that, so a node that answers nothing within the socket timeout is known
// to be unreachable instead of being waited on for ever. This is the
// implicit ping of Ganeti's inter-node RPC timeout design.
//
// [Client.Call] runs a function to its end: it starts it, waits in rounds,
// streams the function's log lines to a callback as they arrive, releases
// the call on the node once the result is read, and returns the result or
// a typed error. [CallEach] does the same on many nodes at once, with a
// bound on concurrency and one [Result] per node.
//
// Failures are retried per procedure ([RetryPolicies]) with full-jitter
// exponential back-off and a cap on attempts and total time. Every error
// has a kind that errors.Is and errors.As can test: the rpc sentinels
// (rpc.ErrUnreachable, rpc.ErrBusy, rpc.ErrLost, rpc.ErrFunctionFailed,
// ...), [ErrOffline], and the context's errors. [*UnreachableError] and
// [*CallError] carry the details.
//
// A [Cluster] asks masterd, the group's master daemon, for the nodes it
// knows, whether each is up, and their configuration, and gives a
// [Client] for each up node (see [Cluster.UpClients]); it tries the
// group's masters in turn, and reports them as a Client reports a node.
//
// doc/client.md describes the retry policy and the unreachable bound.
package master
