// Command noderpc-floor is the minimal Go process of noderpc bench's
// floors: it writes one JSON line (a hello), reads one line from stdin,
// writes one JSON line (a result) and exits. It imports nothing but os,
// so its start is what any Go program's start costs on the machine, and
// the bench measures noded's calls against it: its spawn for cold calls,
// one line through it once started and idle for warm ones. noderpc bench
// finds it beside its own executable or in PATH.
package main

import "os"

// hello is the greeting noded wants first; its protocol is
// wire.ProtocolVersion, written out so that this program imports nothing
// (bench's tests fail if the two differ).
const hello = "{\"protocol\":2}\n"

func main() {
	os.Stdout.Write([]byte(hello))
	var buf [64 << 10]byte
	n := 0
	for n < len(buf) {
		m, err := os.Stdin.Read(buf[n:])
		n += m
		if err != nil || (m > 0 && buf[n-1] == '\n') {
			break
		}
	}
	os.Stdout.Write([]byte("{\"result\":true}\n"))
}
