package tools

// The rows of "a node broken or hostile": the real noderpc binary against
// fake nodes on loopback that misbehave byte by byte. Each run must end
// within the socket-timeout bound with an error that names the node and
// what it did, exit 3, and stay within 100 MB of resident memory above a
// run against a good node.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
)

// edgeFlags bound every run: a silent node is given up on after 2s.
var edgeFlags = []string{"--insecure", "--socket-timeout", "1s", "--unreachable-after", "2s"}

// runBinary runs the noderpc binary with edgeFlags and args, under the
// peakrss binary (tools/testdata/peakrss), and returns its exit status,
// output and peak resident memory in bytes: its rusage's Maxrss, as the
// child of a small process (peakrss says why). Both are built without
// the race detector, whose shadow memory would swamp what is measured.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string, maxRSS int64) {
	t.Helper()
	peakrss, noderpc := nodetest.BinaryNoRace(t, "./testdata/peakrss"), nodetest.BinaryNoRace(t, noderpcPackage)
	rssFile := filepath.Join(t.TempDir(), "maxrss")
	var out, errb strings.Builder
	cmd := exec.Command(peakrss, append(append([]string{rssFile, noderpc}, edgeFlags...), args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	b, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatalf("noderpc %q did not run: %v\n%s", args, err, errb.String())
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String(), kib << 10
}

func TestHostileNodes(t *testing.T) {
	good := startNode(t).Addr()
	code, _, stderr, baseline := runBinary(t, "call", good, "echo", `"x"`)
	if code != ExitOK {
		t.Fatalf("call on a good node = exit %d, %s", code, stderr)
	}
	t.Logf("baseline: call on a good node peaks at %.1f MB resident", float64(baseline)/1e6)

	spaces := []byte(strings.Repeat(" ", 1<<20))
	chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", len(spaces), spaces)
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n"
	// Each byte of a trickle comes well within the socket timeout, the
	// whole answer well after it: only a deadline for the whole answer
	// stops it.
	const gap = 400 * time.Millisecond
	within := `no whole answer within [0-9.]+m?s: `
	for _, tc := range []struct {
		name   string
		answer nodetest.Answer
		want   string // the error line after "NODE: "
	}{
		{"declares 2 GB and streams spaces", nodetest.Flood("HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n", spaces, nil),
			`StartFunction: protocol_error: the node declared an answer of 2000000000 bytes, over the client's limit of 41438752 \(Options.MaxAnswer\)`},
		{"sends 1 MiB chunks forever", nodetest.Flood("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk, nil),
			`StartFunction: protocol_error: the node sent an answer of more than 41438752 bytes, the client's limit \(Options.MaxAnswer\)`},
		{"sends its status line a byte at a time", nodetest.Trickle(head+"{  }", gap, nil),
			`unreachable after \d attempts? over 2s: ` + within + `it sent only part of its answer's status line and headers`},
		{"sends its body a byte at a time", func(conn net.Conn, req *http.Request) bool {
			io.WriteString(conn, head)
			return nodetest.Trickle("{  }", gap, nil)(conn, req)
		},
			`unreachable after \d attempts? over 2s: ` + within + `it sent HTTP 200 and only [1-3] of its 4 body bytes`},
		{"accepts and says nothing", nodetest.Silent,
			`unreachable after \d attempts? over 2s: no answer within [0-9.]+m?s`},
		{"answers 200 with {not json}!", func(conn net.Conn, _ *http.Request) bool {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{not json}!")
			return false
		}, `StartFunction: protocol_error: node answered HTTP 200 with a malformed body: .+`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most rows wait out the socket timeout
			node := nodetest.StartFake(t, tc.answer).Addr

			code, stdout, stderr, rss := runBinary(t, "call", node, "echo", `"x"`)

			t.Logf("exit %d, peak %.1f MB resident (%+.1f MB): %s", code, float64(rss)/1e6, float64(rss-baseline)/1e6, strings.TrimSpace(stderr))
			want := regexp.MustCompile("^" + regexp.QuoteMeta(node) + ": " + tc.want + "$")
			if code != ExitUnreachable || stdout != "" || !want.MatchString(strings.TrimSpace(stderr)) {
				t.Errorf("noderpc call on a node that %s = exit %d, stdout %q, stderr %q; want exit 3 and a line matching %s",
					tc.name, code, stdout, stderr, want)
			}
			if rss-baseline >= 100e6 {
				t.Errorf("noderpc call on a node that %s peaked at %d bytes resident, %d over a good call's: want under 100 MB over",
					tc.name, rss, rss-baseline)
			}
		})
	}
}

func TestFanOutPrintsEachNodeAsItIsDone(t *testing.T) {
	good := startNode(t).Addr()
	quiet := nodetest.StartFake(t, nodetest.Silent).Addr
	goodLine := regexp.MustCompile("^" + regexp.QuoteMeta(good) + `: "x"$`)
	goodJSON := regexp.MustCompile(`^\{"node":"` + regexp.QuoteMeta(good) + `","ok":true,`)
	quietLine := regexp.MustCompile("^" + regexp.QuoteMeta(quiet) + `: unreachable after .*: no answer within `)
	for _, tc := range []struct {
		name        string
		args        []string
		first, then *regexp.Regexp
		firstEarly  bool // the first line is out while the silent node still holds noderpc
	}{
		{"as done", []string{"call", good, quiet, "echo", `"x"`}, goodLine, quietLine, true},
		{"as done, silent node given first", []string{"call", quiet, good, "echo", `"x"`}, goodLine, quietLine, true},
		{"--json", []string{"--json", "call", quiet, good, "echo", `"x"`}, goodJSON, regexp.MustCompile(`"kind":"unreachable"`), true},
		{"--ordered", []string{"call", "--ordered", quiet, good, "echo", `"x"`}, quietLine, goodLine, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits out the silent node
			// stdout and stderr through one pipe, to see their order.
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			cmd := exec.Command(nodetest.Binary(t, noderpcPackage), append(append([]string(nil), edgeFlags...), tc.args...)...)
			cmd.Stdout, cmd.Stderr = pw, pw
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()

			var got []string
			select {
			case l, ok := <-lines:
				if ok {
					got = append(got, l)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("noderpc printed nothing in 20s")
			}
			early := running(cmd.Process.Pid)
			for l := range lines {
				got = append(got, l)
			}
			cmd.Wait()

			if len(got) != 2 || !tc.first.MatchString(got[0]) || !tc.then.MatchString(got[1]) {
				t.Fatalf("noderpc %q printed %q; want a line matching %s, then one matching %s", tc.args, got, tc.first, tc.then)
			}
			if tc.firstEarly && !early {
				t.Errorf("noderpc %q had exited when its first line %q was read: want it out while the silent node still held it", tc.args, got[0])
			}
			if code := cmd.ProcessState.ExitCode(); code != ExitUnreachable {
				t.Errorf("noderpc %q exited %d, want 3", tc.args, code)
			}
		})
	}
}

// running reports whether process pid has not exited yet: a child that
// has exited is a zombie until it is waited for.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(b, ')') // the state follows the command's name
	return err == nil && i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func TestTerminalShowsEachResultAboveTheStatusLine(t *testing.T) {
	real := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	t.Cleanup(func() { isTerminal = real })
	good := startNode(t).Addr()
	quiet := nodetest.StartFake(t, nodetest.Silent).Addr

	code, stdout, stderr := run(t, "", "call", quiet, good, "echo", `"x"`)

	if code != ExitUnreachable || !strings.HasPrefix(stderr, quiet+": unreachable") {
		t.Fatalf("call on a silent and a good node = exit %d, stderr %q; want 3 and the silent node unreachable", code, stderr)
	}
	// The good node's line on a line of its own (the status line erased
	// if it was up), then the status line again, counting it done, while
	// the silent node still runs.
	result := strings.Index(stdout, good+`: "x"`+"\n")
	if result > 0 && !strings.HasSuffix(stdout[:result], "\r\x1b[K") {
		result = -1
	}
	after := strings.Index(stdout, "\r\x1b[K… echo on 2 nodes, 1 done: ")
	if result < 0 || after < result {
		t.Errorf("stdout %q: want the good node's line, then the status line redrawn with 1 done", stdout)
	}
	if !strings.HasSuffix(stdout, "\r\x1b[K") {
		t.Errorf("stdout %q does not end by erasing the status line", stdout)
	}
}
