package nodetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// NodedPackage is the import path of the noded command.
const NodedPackage = "github.com/noderpc/noderpc/noded/cmd/noded"

// errNoRun is the failure of a build asked for outside [Run]: nothing
// would remove the binaries, nor stop the nodes, after the tests.
var errNoRun = errors.New("nodetest: binaries are built only under nodetest.Run; call nodetest.Main(m) (or os.Exit(nodetest.Run(m))) from TestMain")

// build is one binary built for this test binary, once.
type build struct {
	once sync.Once
	path string
	err  error // with go build's output
}

// buildKey names a build: the same package is built at most once with
// and once without the race detector.
type buildKey struct {
	pkg  string
	race bool
}

var (
	buildMu sync.Mutex
	binDir  string // where Run's binaries go; "" outside Run
	builds  = map[buildKey]*build{}
	// launched are the nodes of Launch that are not closed yet: Run
	// closes what the tests left.
	launched = map[*Node]bool{}
)

// Main runs the tests of m with [Run] and exits with its status. A test
// package whose tests start nodes calls it from TestMain:
//
//	func TestMain(m *testing.M) { nodetest.Main(m) }
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run runs the tests of m and returns their exit status, for a TestMain
// with more to do than [Main]. Binaries are built lazily, when a test
// first asks for one, into a directory Run removes once the tests are
// done; a build that failed is printed once more, in full, at the end,
// and fails the run. Nodes from [Launch] that are still open are closed
// then, and a problem closing them fails the run too. Run sets GORACE
// for the processes the tests start (see withoutExitSleep).
func Run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodetest-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodetest: creating the directory for the binaries: %v\n", err)
		return 1
	}
	buildMu.Lock()
	binDir = dir
	buildMu.Unlock()
	// This process's detector has read GORACE already: the change is
	// for the processes the tests start.
	os.Setenv("GORACE", withoutExitSleep(os.Getenv("GORACE")))

	code := m.Run()

	buildMu.Lock()
	var open []*Node
	for n := range launched {
		open = append(open, n)
	}
	var failed []string
	for k, b := range builds {
		// Every build in the map was run: its Once has completed, or a
		// test is still in it, which m.Run would not have returned with.
		if b.err != nil {
			failed = append(failed, fmt.Sprintf("nodetest: building %s (race %v) failed:\n%v\n", k.pkg, k.race, b.err))
		}
	}
	binDir = ""
	buildMu.Unlock()

	for _, n := range open {
		if err := n.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "nodetest: closing a node the tests left open: %v\n", err)
			code = 1
		}
	}
	sort.Strings(failed)
	for _, f := range failed {
		fmt.Fprint(os.Stderr, f)
		code = 1
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "nodetest: removing the binaries: %v\n", err)
	}
	return code
}

// withoutExitSleep returns the GORACE options gorace with
// atexit_sleep_ms=0, unless they set it. A program built with the race
// detector sleeps a second before it exits, by default, for the reports
// of its other goroutines to come in; under the tests every stop of
// noded, every call of a Go function (a process of its own) and every run
// of a built command would take a second more. Races are still reported
// as they happen.
func withoutExitSleep(gorace string) string {
	if strings.Contains(gorace, "atexit_sleep_ms=") {
		return gorace
	}
	return strings.TrimSpace(gorace + " atexit_sleep_ms=0")
}

// FunctionBinaryPackage is the import path of noded's function binary,
// the lean program its Go functions run in.
const FunctionBinaryPackage = "github.com/noderpc/noderpc/noded/cmd/noded-fn"

// Noded returns the path of noded built for this test binary: with the
// race detector when the tests run with it. Its function binary is built
// too and linked beside it, where noded finds it, so the tests run Go
// functions as an installed noded does. The test fails if either cannot
// be built.
func Noded(t testing.TB) string {
	t.Helper()
	return nodedOrFail(t, raceBuild)
}

func nodedOrFail(t testing.TB, race bool) string {
	t.Helper()
	path, first, err := nodedBinary(race)
	return builtOrFail(t, NodedPackage, race, path, first, err)
}

// nodedBinary builds noded and its function binary once and links the
// latter beside the former, under the name noded looks for (its own with
// "-fn" added, functions.BinarySuffix).
func nodedBinary(race bool) (path string, first bool, err error) {
	path, first, err = binary(NodedPackage, race)
	if err != nil {
		return "", first, err
	}
	fn, fnFirst, err := binary(FunctionBinaryPackage, race)
	if err != nil {
		return "", fnFirst, err
	}
	if err := os.Link(fn, path+"-fn"); err != nil && !errors.Is(err, os.ErrExist) {
		return "", true, fmt.Errorf("nodetest: placing the function binary beside noded: %w", err)
	}
	return path, first, nil
}

// Binary returns the path of the command pkg (an import path in this
// module, e.g. "github.com/noderpc/noderpc/tools/noderpc") built for this
// test binary, with the race detector when the tests run with it. Each
// package is built once per test binary, by the first test that asks.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	return binaryOrFail(t, pkg, raceBuild)
}

// BinaryNoRace is [Binary] built without the race detector whatever the
// tests run with: for a test that measures the memory of the process,
// which the race detector's shadow memory would inflate several times.
func BinaryNoRace(t testing.TB, pkg string) string {
	t.Helper()
	return binaryOrFail(t, pkg, false)
}

func binaryOrFail(t testing.TB, pkg string, race bool) string {
	t.Helper()
	path, first, err := binary(pkg, race)
	return builtOrFail(t, pkg, race, path, first, err)
}

// builtOrFail returns path if pkg was built, and fails the test if not:
// with the build's output for the first test that asked, and one line
// for the others (Run prints the output again at the end).
func builtOrFail(t testing.TB, pkg string, race bool, path string, first bool, err error) string {
	t.Helper()
	switch {
	case err == nil:
		return path
	case first:
		t.Fatal(err)
	default:
		t.Fatalf("nodetest: %s could not be built (race %v); see the first failure, or the end of the run", pkg, race)
	}
	return ""
}

// binary builds pkg once and returns its path; first reports whether
// this call was the one that ran the build.
func binary(pkg string, race bool) (path string, first bool, err error) {
	buildMu.Lock()
	dir := binDir
	if dir == "" {
		buildMu.Unlock()
		return "", true, errNoRun
	}
	k := buildKey{pkg, race}
	b := builds[k]
	if b == nil {
		b = &build{}
		builds[k] = b
	}
	buildMu.Unlock()
	b.once.Do(func() {
		first = true
		b.path, b.err = goBuild(dir, pkg, race)
	})
	return b.path, first, b.err
}

// goBuild runs go build for pkg into dir. It runs in the current
// directory, which in a test is its package's, so the module built is
// the one under test.
func goBuild(dir, pkg string, race bool) (string, error) {
	// Named after the whole path, so that two packages of one base name
	// ("./testdata/x", ".../cmd/x") do not overwrite each other.
	name := Sanitize(strings.TrimPrefix(pkg, "github.com/noderpc/noderpc/"))
	args := []string{"build", "-o"}
	if race {
		name += "-race"
		args = append(args, filepath.Join(dir, name), "-race", pkg)
	} else {
		args = append(args, filepath.Join(dir, name), pkg)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return filepath.Join(dir, name), nil
}
