package nodetest

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Log returns what the latest incarnation has written to its stdout and
// stderr so far.
func (n *Node) Log() string { return n.log() }

// LogFiles returns the log file of each incarnation, oldest first.
func (n *Node) LogFiles() []string { return n.logFiles() }

// LogLine returns the first line of the latest incarnation's log that
// holds every one of parts.
func (n *Node) LogLine(parts ...string) (string, bool) { return n.logLine(parts...) }

// AwaitLogLine polls the latest incarnation's log until a line holds
// every one of parts, and returns it; the test fails after 20s. noded
// may log an event just after the answer that tells the test of it.
func (n *Node) AwaitLogLine(t testing.TB, parts ...string) string {
	t.Helper()
	return n.awaitLogLine(t, parts...)
}

// LogAttr returns the value of key in a log line of slog's text format
// (as noded and masterd write), unquoted. The line is read pair by pair,
// so a key=value inside a quoted value is not taken for an attribute.
func LogAttr(line, key string) (string, bool) {
	rest := strings.TrimSpace(line)
	for rest != "" {
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			return "", false
		}
		var v string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return "", false
			}
			v, _ = strconv.Unquote(q)
			after = after[len(q):]
		} else {
			v, after, _ = strings.Cut(after, " ")
		}
		if k == key {
			return v, true
		}
		rest = strings.TrimLeft(after, " ")
	}
	return "", false
}

// LogTime returns the time attribute key of a log line of slog's text
// format, such as "time", the moment the line was written.
func LogTime(line, key string) (time.Time, error) {
	v, ok := LogAttr(line, key)
	if !ok {
		return time.Time{}, fmt.Errorf("nodetest: no %s in the log line %q", key, line)
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("nodetest: the %s of the log line %q: %w", key, line, err)
	}
	return at, nil
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func readFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return string(b)
}

// tail returns the last n bytes of s, marked as cut if they are not all.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// clip returns s cut to n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
