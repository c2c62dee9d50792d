//go:build !race

package nodetest

// raceBuild is false when this test binary runs without the race
// detector: the binaries the harness builds for it are plain builds.
const raceBuild = false
