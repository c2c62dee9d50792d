package masterd

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
)

// lateGrantClock is the real clock, except that its first reading, the
// send time of the first lease grant, is early by by: as if etcd had
// answered the grant that long after it was sent.
type lateGrantClock struct {
	realClock
	by   time.Duration
	once sync.Once
}

func (c *lateGrantClock) Now() time.Time {
	now := time.Now()
	c.once.Do(func() { now = now.Add(-c.by) })
	return now
}

// runOnEtcd runs a masterd in the test's process, a candidate on the
// test's etcd with a lease of haTTL, on clock, logging to log, until the
// test ends; it returns the address it serves on.
func runOnEtcd(t *testing.T, log *nodetest.SyncBuffer, clock Clock) string {
	t.Helper()
	endpoints := nodetest.EtcdEndpoints(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Insecure: true, Listen: ln.Addr().String(), StateDir: t.TempDir(),
		SessionTimeout: DefaultSessionTimeout, MaxSessionTimeout: DefaultSessionTimeout,
		MaxConns: DefaultMaxConns, HeadTimeout: DefaultHeadTimeout, LogFormat: "text", LogLevel: "info",
		Etcd: strings.Join(endpoints, ","), EtcdPrefix: nodetest.EtcdPrefix(t), LeaseTTL: haTTL,
	}
	runInTest(t, cfg, Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(log, nil)), Clock: clock})
	return ln.Addr().String()
}

// TestLateGrant elects a master whose lease grant was answered almost
// TTL - margin after it was sent (etcd coming back from an outage): it
// must not step down for want of a keepalive right after it is active.
// It was elected, and stepped down some milliseconds later, before its
// first keepalive was due: a second failover for every node.
func TestLateGrant(t *testing.T) {
	timings := timingsOf(haTTL)
	var log nodetest.SyncBuffer
	runOnEtcd(t, &log, &lateGrantClock{by: timings.limit() - 100*time.Millisecond})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "msg=active") {
		if time.Now().After(deadline) {
			t.Fatalf("masterd was not elected within 20s; its log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, which has no event to wait on
	}
	// Past the late grant's deadline and a keepalive interval more.
	deadline = time.Now().Add(timings.limit() + timings.interval)
	for time.Now().Before(deadline) {
		if strings.Contains(log.String(), "stepped down") {
			t.Fatalf("the master stepped down after a late grant; its log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, which has no event to wait on
	}
}

// jumpClock is the real clock, read ahead by ahead: as if the process
// had been frozen that long and had just woken, before any of its
// timers has run.
type jumpClock struct {
	realClock
	ahead atomic.Int64
}

func (c *jumpClock) Now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }

// TestWakesNotActive freezes an active master past its lease's
// deadline, in effect: its clock jumps ahead by the TTL while its lease
// guard's timer has not run yet. A request answered in that instant
// must be not_active; it was answered as the active master's, on a
// lease another master may have taken over meanwhile.
func TestWakesNotActive(t *testing.T) {
	var log nodetest.SyncBuffer
	clock := &jumpClock{}
	url := "http://" + runOnEtcd(t, &log, clock) + "/ListNodes"
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("masterd was not active within 20s; its log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the master's answer, which has no event to wait on
	}
	clock.ahead.Store(int64(haTTL))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("ListNodes right after a freeze past the lease's deadline = %s, want 421 not_active", resp.Status)
	}
}
