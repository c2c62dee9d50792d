//go:build race

package nodetest

// raceBuild is true when this test binary runs with the race detector:
// the binaries the harness builds for it get -race too, so that the
// daemon's own code is checked by the same run.
const raceBuild = true
