package nodetest

import (
	"testing"
	"time"
)

func TestLogAttrAndTime(t *testing.T) {
	line := `time=2026-12-01T19:52:08.411Z level=WARN msg="stepped down: x=1" url=http://127.0.0.1:1 lease_lives_until_at_least=2026-12-01T19:52:09.410834628Z`
	for key, want := range map[string]string{"msg": "stepped down: x=1", "url": "http://127.0.0.1:1", "level": "WARN"} {
		if got, ok := LogAttr(line, key); !ok || got != want {
			t.Errorf("LogAttr(%s) = %q, %t; want %q", key, got, ok, want)
		}
	}
	if got, ok := LogAttr(line, "x"); ok {
		t.Errorf("LogAttr(x) = %q: found inside a quoted value", got)
	}
	at, err := LogTime(line, "lease_lives_until_at_least")
	if want := time.Date(2026, 12, 1, 19, 52, 9, 410834628, time.UTC); err != nil || !at.Equal(want) {
		t.Errorf("LogTime = %v, %v; want %v", at, err, want)
	}
	if _, err := LogTime(line, "url"); err == nil {
		t.Errorf("LogTime of a URL: no error")
	}
	if _, err := LogTime(line, "absent"); err == nil {
		t.Errorf("LogTime of an absent key: no error")
	}
}
