package service

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestNewNotifier(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		socket, usec, watchdogPID string
		wantAddr                  string
		wantWatchdog              time.Duration
		wantErr                   bool
	}{
		{name: "outside systemd"},
		{name: "path", socket: "/run/systemd/notify", wantAddr: "/run/systemd/notify"},
		{name: "abstract", socket: "@/org/freedesktop/systemd1/notify/1", wantAddr: "@/org/freedesktop/systemd1/notify/1"},
		{name: "unsupported address", socket: "vsock:2:1234", wantErr: true},
		{name: "watchdog at half", socket: "/s", usec: "30000000", wantAddr: "/s", wantWatchdog: 15 * time.Second},
		{name: "watchdog for this pid", socket: "/s", usec: "200000", watchdogPID: "42", wantAddr: "/s", wantWatchdog: 100 * time.Millisecond},
		{name: "watchdog for another pid", socket: "/s", usec: "200000", watchdogPID: "43", wantAddr: "/s"},
		{name: "bad watchdog", socket: "/s", usec: "soon", wantAddr: "/s", wantErr: true},
		{name: "zero watchdog", socket: "/s", usec: "0", wantAddr: "/s", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNotifier(tc.socket, tc.usec, tc.watchdogPID, 42)
			if (err != nil) != tc.wantErr {
				t.Errorf("NewNotifier(%q, %q, %q, 42) error = %v, want error: %v", tc.socket, tc.usec, tc.watchdogPID, err, tc.wantErr)
			}
			gotAddr := ""
			if n.addr != nil {
				gotAddr = n.addr.Name
			}
			if gotAddr != tc.wantAddr || n.watchdog != tc.wantWatchdog {
				t.Errorf("NewNotifier(%q, %q, %q, 42) = socket %q, watchdog %s; want %q, %s", tc.socket, tc.usec, tc.watchdogPID, gotAddr, n.watchdog, tc.wantAddr, tc.wantWatchdog)
			}
		})
	}
}

func TestNotifySends(t *testing.T) {
	var b [8]byte
	rand.Read(b[:])
	for _, tc := range []struct{ kind, name string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@noded-test-" + hex.EncodeToString(b[:])},
	} {
		name := tc.name
		t.Run(tc.kind, func(t *testing.T) {
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			n, err := NewNotifier(name, "", "", 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Notify("READY=1", "STATUS=serving"); err != nil {
				t.Fatalf("notify to %s: %v", name, err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4096)
			k, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("reading the datagram sent to %s: %v", name, err)
			}
			if got, want := string(buf[:k]), "READY=1\nSTATUS=serving\n"; got != want {
				t.Errorf("datagram = %q, want %q", got, want)
			}
		})
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	n, err := NewNotifier("", "", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Errorf("notify without NOTIFY_SOCKET = %v, want nil", err)
	}
}
