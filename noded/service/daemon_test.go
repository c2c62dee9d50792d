package service

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// A value its flag does not parse is refused saying what the flag
// wants; the flag package alone says only "parse error".
func TestParseSaysWhatAFlagWants(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--wait", "10"}, `; want a duration with its unit, such as "500ms", "10s" or "15m"`},
		{[]string{"--count", "many"}, "; want an integer"},
		{[]string{"--on=maybe"}, "; want true or false, as --on=false"},
	} {
		set := flag.NewFlagSet("daemon", flag.ContinueOnError)
		set.SetOutput(io.Discard)
		set.Duration("wait", time.Second, "")
		set.Int("count", 1, "")
		set.Bool("on", false, "")
		config := ""
		err := Parse(set, tc.args, &config, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid ") || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want the flag package's error ending in %q", tc.args, err, tc.want)
		}
	}
}
