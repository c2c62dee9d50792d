package jobs

import (
	"bytes"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkCgroupCall times the cgroup work of one call that takes an idle
// cgroup and leaves it empty: take it, check it for leftovers once the
// process is reaped, check it again and for nested cgroups on release,
// and keep it. No process is started, so that the figure is the cgroup
// work alone. "paths" is the same work as noded did it when it opened
// every file by its full path and the directory once per call;
// "descriptors" is noded's. Compare the two in one run.
func BenchmarkCgroupCall(b *testing.B) {
	tag, err := daemonTag()
	if err != nil {
		b.Fatal(err)
	}
	c, err := newCgroups(tag)
	if err != nil {
		b.Skipf("cgroup v2 is not writable here: %v", err)
	}
	defer c.close()
	g, err := c.create()
	if err != nil {
		b.Fatal(err)
	}
	if err := g.release(); err != nil || len(c.idle) != 1 {
		b.Fatalf("release of an empty cgroup = %v, %d idle; want it kept", err, len(c.idle))
	}

	b.Run("paths", func(b *testing.B) {
		idle := []string{c.idle[0].path}
		for range b.N {
			path := idle[len(idle)-1]
			idle = idle[:len(idle)-1]
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd) // once clone has used it
			leftovers := saysByPath(path, "cgroup.events", "populated 0\n")
			empty := saysByPath(path, "cgroup.events", "populated 0\n")
			flat := saysByPath(path, "cgroup.stat", "nr_descendants 0\n")
			if !leftovers || !empty || !flat {
				b.Fatal("an empty cgroup reads populated or nested")
			}
			idle = append(idle, path)
		}
	})
	b.Run("descriptors", func(b *testing.B) {
		for range b.N {
			g, err := c.create()
			if err != nil {
				b.Fatal(err)
			}
			if g.populated() {
				b.Fatal("an empty cgroup reads populated")
			}
			if err := g.release(); err != nil || len(c.idle) != 1 {
				b.Fatalf("release of an empty cgroup = %v, %d idle; want it kept", err, len(c.idle))
			}
		}
	})
}

// saysByPath is (*cgroupFiles).says as it was before noded held its
// cgroups open: an open by full path, a read and a close per check.
func saysByPath(path, file, line string) bool {
	fd, err := unix.Open(filepath.Join(path, file), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var buf [256]byte
	n, err := unix.Read(fd, buf[:])
	return err == nil && bytes.Contains(buf[:n], []byte(line))
}
