// Package faults is noderpc's fault and load suite: it proves that a fault
// never turns into a hang or a silent loss.
//
// The suite holds no code of the product. Its tests, behind the build tag
// "fault" so that go test ./... stays quick, start real noded processes
// (through master/nodetest, built once per test binary), drive them through the master client under
// load, and inject faults while the load runs:
//
//   - noded SIGKILLed mid-load and restarted on the same address: every
//     call of the dead daemon is reported lost, none hangs, and none of its
//     function processes (grandchildren included) survives it;
//   - noded frozen with SIGSTOP and thawed with SIGCONT: calls are reported
//     unreachable within the bound of doc/client.md and resume afterwards
//     without running twice;
//   - a TCP proxy on 127.0.0.1 between client and node that passes, delays,
//     stalls (accepts bytes and never forwards them) or resets;
//   - functions that misbehave: crash, hang past abort_after, ignore
//     SIGTERM, flood stdout or stderr, daemonize grandchildren with setsid,
//     exit before reading stdin, write half a result;
//   - load above --max-running with random cancels, releases and
//     request_id replays, so that busy and back-off happen.
//
// Every scenario ends with the same accounting: every StartFunction the
// load issued has exactly one terminal outcome known to the client
// (succeeded, failed, cancelled, aborted, lost, unreachable), no call ran
// twice (each run appends a line to a file named after the call's token),
// no process carrying the scenario's marker (an environment variable
// noded hands down to every function process) is left, noded's file
// descriptors return to their idle level (those of its call cgroups,
// held open for reuse, within their bound), and its threads, goroutines and
// resident memory do not grow from round to round.
//
// Run the short suite (under two minutes with -race on two cores) with
//
//	go test -race -tags fault ./noded/faults/
//
// and the long one, with more rounds and more load, with
//
//	go test -race -tags fault -timeout 30m ./noded/faults/ -long
//
// or NODERPC_FAULT_LONG=1 in the environment. doc/reliability.md holds the
// summary table of a real run and the command to rerun each scenario.
package faults
