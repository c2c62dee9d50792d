package master

import (
	"strings"
	"testing"
)

// A port no dial can use is refused by New, not retried by every
// procedure as an unreachable node.
func TestNewRefusesPortOutOfRange(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:http", "127.0.0.1:-1"} {
		if _, err := New(addr, Options{Insecure: true}); err == nil || !strings.Contains(err.Error(), "not a number from 1 to 65535") {
			t.Errorf("New(%q) = %v, want an error about the port", addr, err)
		}
	}
	if _, err := New("127.0.0.1:65535", Options{Insecure: true}); err != nil {
		t.Errorf("New with port 65535 = %v", err)
	}
}
