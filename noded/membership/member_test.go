package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/master/nodetest"
	"github.com/noderpc/noderpc/rpc"
)

// clock is an After that hands each wait to the test, which fires it.
type clock struct{ waits chan wait }

type wait struct {
	d    time.Duration
	fire chan time.Time
}

func (c *clock) after(d time.Duration) <-chan time.Time {
	w := wait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

func facts() ([]rpc.Function, []rpc.CallSummary) { return nil, nil }

// A node whose masters are all down keeps saying hello, backing off up
// to the cap and then staying there, and logs the failure once when it
// starts and once when it reaches the cap, not at every attempt.
func TestHelloBacksOffToTheCapAndLogsOnce(t *testing.T) {
	var log nodetest.SyncBuffer
	clk := &clock{waits: make(chan wait)}
	dead := nodetest.DeadAddrs(t, 2)
	m, err := New(Config{
		Masters: []string{"http://" + dead[0], "http://" + dead[1]},
		Node:    "node1", URL: "http://127.0.0.1:1811", BootID: "boot1", Facts: facts,
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
		Rand:   func(n int64) int64 { return n - 1 }, // the longest wait
		After:  clk.after,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()

	const attempts = 12
	for i := 1; i <= attempts; i++ {
		select {
		case w := <-clk.waits:
			if want := ceiling(i); w.d != want {
				t.Errorf("wait after failure %d = %v, want %v", i, w.d, want)
			}
			if m.Held() {
				t.Errorf("Held() = true after failure %d, want false", i)
			}
			w.fire <- time.Now()
		case <-time.After(10 * time.Second):
			t.Fatalf("no back-off after failure %d", i)
		}
	}
	<-clk.waits // the next failure is waiting: stop it there
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return once its context ended")
	}
	out := log.String()
	for _, tc := range []struct {
		line string
		want int
	}{
		{"hello failed; trying the masters with back-off", 1},
		{"trying at the capped interval", 1},
		{"connection refused", 2},
	} {
		if got := strings.Count(out, tc.line); got != tc.want {
			t.Errorf("log has %q %d times, want %d; log:\n%s", tc.line, got, tc.want, out)
		}
	}
	if !strings.Contains(out, "attempts=8") {
		t.Errorf("the capped-interval line does not count 8 attempts; log:\n%s", out)
	}
}

func TestNewRefuses(t *testing.T) {
	ok := Config{Masters: []string{"http://127.0.0.1:1812"}, Node: "n", URL: "http://127.0.0.1:1811", BootID: "b", Facts: facts}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		isURL bool
	}{
		{"no masters", func(c *Config) { c.Masters = nil }, false},
		{"https master in plain HTTP", func(c *Config) { c.Masters = []string{"https://127.0.0.1:1812"} }, true},
		{"no node", func(c *Config) { c.Node = "" }, false},
		{"no facts", func(c *Config) { c.Facts = nil }, false},
	} {
		c := ok
		tc.edit(&c)
		_, err := New(c)
		if err == nil || errors.Is(err, ErrBadURL) != tc.isURL {
			t.Errorf("%s: New = %v, want an error (a *URLError: %v)", tc.name, err, tc.isURL)
		}
	}
	m, err := New(Config{Masters: []string{"http://127.0.0.1:1812/", "http://127.0.0.1:1812"}, Node: "n", URL: "u", BootID: "b", Facts: facts})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Status().Masters; len(got) != 1 || got[0] != "http://127.0.0.1:1812" {
		t.Errorf("Status().Masters = %q, want the one master in canonical form", got)
	}
}

// Masters named by a session join the configured ones, once each; a
// later session's list replaces what was learned, never what was
// configured; a URL the node cannot speak to is skipped.
func TestLearnMasters(t *testing.T) {
	var log nodetest.SyncBuffer
	m, err := New(Config{
		Masters: []string{"http://127.0.0.1:1812", "http://127.0.0.1:1813"},
		Node:    "n", URL: "u", BootID: "b", Facts: facts,
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		named []string
		want  []string
	}{
		{[]string{"http://127.0.0.1:1813/", "http://127.0.0.1:1814", "https://127.0.0.1:1815", "http://127.0.0.1:1814"},
			[]string{"http://127.0.0.1:1812", "http://127.0.0.1:1813", "http://127.0.0.1:1814"}},
		{[]string{"http://localhost:1816"},
			[]string{"http://127.0.0.1:1812", "http://127.0.0.1:1813", "http://localhost:1816"}},
		{nil, []string{"http://127.0.0.1:1812", "http://127.0.0.1:1813"}},
	} {
		m.learn(m.Status(), rpc.Session{Masters: tc.named})
		if got := m.Status().Masters; !slices.Equal(got, tc.want) {
			t.Errorf("after a session naming %q: masters = %q, want %q", tc.named, got, tc.want)
		}
	}
	var many []string
	for port := 2000; port < 2020; port++ {
		many = append(many, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	m.learn(m.Status(), rpc.Session{Masters: many})
	if got, want := m.Status().Masters, append([]string{"http://127.0.0.1:1812", "http://127.0.0.1:1813"}, many[:maxLearnedMasters]...); !slices.Equal(got, want) {
		t.Errorf("after a session naming %d masters: masters = %q, want the configured ones and the first %d named", len(many), got, maxLearnedMasters)
	}
	if !strings.Contains(log.String(), "ignoring the rest of the masters masterd named") {
		t.Errorf("the masters over the bound were not logged as ignored; log:\n%s", log.String())
	}
	if !strings.Contains(log.String(), `ignoring a master masterd named`) {
		t.Errorf("the https master in a plain-HTTP group was not logged as ignored; log:\n%s", log.String())
	}
}

// A configuration is logged when first heard and when its version
// changes, not at every renewal.
func TestConfigChangeLoggedOnce(t *testing.T) {
	var log nodetest.SyncBuffer
	m, err := New(Config{Masters: []string{"http://127.0.0.1:1812"}, Node: "n", URL: "u", BootID: "b", Facts: facts,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []rpc.Session{
		{ConfigVersion: 0},
		{ConfigVersion: 0},
		{ConfigVersion: 3, Config: rpc.Config{"b": []byte(`1`), "a": []byte(`"x"`)}},
		{ConfigVersion: 3, Config: rpc.Config{"b": []byte(`1`), "a": []byte(`"x"`)}},
	} {
		m.learn(m.Status(), s)
	}
	out := log.String()
	if got := strings.Count(out, `msg=configuration`); got != 2 {
		t.Errorf("configuration logged %d times, want 2 (first heard, version 3); log:\n%s", got, out)
	}
	if !strings.Contains(out, `version=3 keys="[a b]"`) {
		t.Errorf("the change to version 3 does not list its keys a and b; log:\n%s", out)
	}
	if got := m.Status(); got.ConfigVersion != 3 || string(got.Config["a"]) != `"x"` {
		t.Errorf("Status() = %+v, want config version 3 with a = \"x\"", got)
	}
}
