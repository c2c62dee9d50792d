package noded

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/noderpc/noderpc/backend"
	"github.com/noderpc/noderpc/noded/service"
)

// newFlags returns noded's flag set bound to c, silent on errors.
func newFlags(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("noded", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.flags(fs)
	return fs
}

// otherValue returns a valid value for f other than its default, as
// command line text. A flag of a type it does not know fails the round
// trip test, so every new flag is covered or the test says what to add.
func otherValue(f *flag.Flag) (string, bool) {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "", false
	}
	switch v := g.Get().(type) {
	case bool:
		return strconv.FormatBool(!v), true
	case time.Duration:
		return (v + 97*time.Minute + 3*time.Second).String(), true
	case int:
		return strconv.Itoa(v + 7), true
	case int64:
		return strconv.FormatInt(v+7, 10), true
	case uint:
		return strconv.FormatUint(uint64(v)+7, 10), true
	case uint64:
		return strconv.FormatUint(v+7, 10), true
	case float64:
		return strconv.FormatFloat(v+0.5, 'g', -1, 64), true
	case []string:
		return "https://m1.example:1812,https://m2.example:1812", true
	case string:
		// Quotes, a backslash and spaces check the file's quoting.
		return `/srv/it's a "` + f.Name + `" \ value`, true
	}
	return "", false
}

func TestConfigFileRoundTripsEveryFlag(t *testing.T) {
	var want Config
	wantFlags := newFlags(&want)
	args := []string{"--config="}
	wantFlags.VisitAll(func(f *flag.Flag) {
		if service.CommandLineOnly[f.Name] {
			return
		}
		v, ok := otherValue(f)
		if !ok {
			t.Errorf("flag --%s has a type (%T) otherValue does not know: add a test value for it", f.Name, f.Value)
			return
		}
		args = append(args, "--"+f.Name+"="+v)
	})
	if err := want.parse(wantFlags, args); err != nil {
		t.Fatalf("parse(%q) = %v, want nil", args, err)
	}
	wantFlags.VisitAll(func(f *flag.Flag) {
		if !service.CommandLineOnly[f.Name] && f.Value.String() == f.DefValue {
			t.Errorf("flag --%s still has its default %q: the test does not cover it", f.Name, f.DefValue)
		}
	})

	var file bytes.Buffer
	if err := service.WriteConfig(&file, wantFlags, service.CommandLineOnly); err != nil {
		t.Fatalf("service.WriteConfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "noded.conf")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var got Config
	if err := got.parse(newFlags(&got), []string{"--config", path}); err != nil {
		t.Fatalf("parse(--config %s) = %v, want nil; the file:\n%s", path, err, file.String())
	}
	got.ConfigFile = want.ConfigFile
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configuration read back from the file differs from the flags written to it\n got %+v\nwant %+v\nfile:\n%s", got, want, file.String())
	}
}

func TestConfigFileFlagsWin(t *testing.T) {
	path := writeFile(t, "max-running = 12\nretention = \"2h\"\nlog-format = \"json\"\ninsecure = true\n")
	var c Config
	if err := c.parse(newFlags(&c), []string{"--config", path, "--max-running", "5", "--insecure=false"}); err != nil {
		t.Fatalf("parse = %v, want nil", err)
	}
	if c.MaxRunning != 5 || c.Insecure {
		t.Errorf("command line flags: got max-running %d, insecure %v; want 5, false (the command line wins)", c.MaxRunning, c.Insecure)
	}
	if c.Retention != 2*time.Hour || c.LogFormat != "json" {
		t.Errorf("keys of the file: got retention %s, log-format %q; want 2h0m0s, json", c.Retention, c.LogFormat)
	}
	if c.ConfigFile != path {
		t.Errorf("ConfigFile = %q, want %q", c.ConfigFile, path)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string // substrings of the error
	}{
		{"unknown key", "max-runing = 3\n", []string{`unknown key "max-runing"`}},
		{"key with underscores", "max_running = 3\n", []string{`unknown key "max_running": write max-running`}},
		{"every unknown key", "a = 1\nb = 2\n", []string{`"a"`, `"b"`}},
		{"command line only key", "version = true\n", []string{`unknown key "version"`}},
		{"config inside config", "config = \"/x\"\n", []string{`unknown key "config"`}},
		{"integer as string", "max-running = \"3\"\n", []string{`key "max-running": want an integer, got a string`}},
		{"duration as number", "retention = 60\n", []string{`key "retention": want a duration string`}},
		{"bad duration", "retention = \"sixty\"\n", []string{`key "retention"`, "sixty"}},
		{"switch as string", "insecure = \"yes\"\n", []string{`key "insecure": want true or false`}},
		{"string as number", "listen = 1811\n", []string{`key "listen": want a string, got an integer`}},
		{"table", "[server]\nlisten = \"x\"\n", []string{`unknown key "server"`}},
		{"syntax", "max-running = 3\nlisten = \n", []string{"line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.file)
			var c Config
			err := c.parse(newFlags(&c), []string{"--config", path})
			if err == nil {
				t.Fatalf("parse of a file holding %q = nil, want an error", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parse of a file holding %q = %q, want it to contain %q", tc.file, err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
		})
	}
}

func TestConfigFileMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.conf")
	var c Config
	err := c.parse(newFlags(&c), []string{"--config", missing})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("parse(--config %s) = %v, want an error wrapping ErrNotExist: a file named on the command line must exist", missing, err)
	}

	if _, err := os.Stat(DefaultConfigFile); err == nil {
		t.Skipf("%s exists on this machine: cannot check that its absence is fine", DefaultConfigFile)
	}
	c = Config{}
	if err := c.parse(newFlags(&c), nil); err != nil {
		t.Errorf("parse() without %s = %v, want nil: the default file is optional", DefaultConfigFile, err)
	}
	if c.ConfigFile != "" {
		t.Errorf("ConfigFile = %q after the default file was absent, want empty", c.ConfigFile)
	}
}

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		wantErr    string // empty: valid
	}{
		{"valid", "insecure = true\nlisten = \"127.0.0.1:0\"\nmax-running = 4\n", nil, ""},
		{"flags complete the file", "listen = \"127.0.0.1:0\"\n", []string{"--insecure"}, ""},
		{"bad value", "insecure = true\nmax-running = 0\n", nil, "--max-running must be > 0"},
		{"plain HTTP off loopback", "insecure = true\nlisten = \"0.0.0.0:1811\"\n", nil, "loopback"},
		{"not insecure", "listen = \"127.0.0.1:0\"\n", nil, "--insecure"},
		{"bad log level", "insecure = true\nlog-level = \"loud\"\n", nil, "--log-level"},
		{"unknown key", "insecure = true\nmax_running = 4\n", nil, `unknown key "max_running"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.file)
			args := append([]string{"--config", path, "--check-config"}, tc.args...)
			var stdout, stderr bytes.Buffer
			err := runCommand(context.Background(), backend.NewRegistry(), args, nil, &stdout, &stderr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Run(%q) = %v, want nil", args, err)
				}
				if want := "configuration is valid (" + path + ")"; !strings.Contains(stdout.String(), want) {
					t.Errorf("Run(%q) printed %q, want it to contain %q", args, stdout.String(), want)
				}
				return
			}
			var usage *UsageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Run(%q) = %v, want a *UsageError (exit status 2) containing %q", args, err, tc.wantErr)
			}
		})
	}
}

func TestPrintConfigIsAValidFile(t *testing.T) {
	var stdout bytes.Buffer
	args := []string{"--config=", "--insecure", "--max-running", "9", "--print-config"}
	if err := runCommand(context.Background(), backend.NewRegistry(), args, nil, &stdout, io.Discard); err != nil {
		t.Fatalf("Run(%q) = %v, want nil", args, err)
	}
	for _, want := range []string{"insecure = true\n", "max-running = 9\n", "shutdown-grace = '10s'\n", "# most calls running at once"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("Run(%q) printed\n%s\nwant it to contain %q", args, stdout.String(), want)
		}
	}
	path := writeFile(t, stdout.String())
	check := []string{"--config", path, "--check-config"}
	if err := runCommand(context.Background(), backend.NewRegistry(), check, nil, io.Discard, io.Discard); err != nil {
		t.Errorf("Run(%q) on the printed configuration = %v, want nil", check, err)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("noded-%d.conf", len(text)))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLogDurationsReadable: a duration reads as Go writes it in both log
// formats, never as bare nanoseconds.
func TestLogDurationsReadable(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		c := Config{LogFormat: format, LogLevel: "info"}
		log, err := c.Logger(&buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("call finished", "duration", 713770*time.Microsecond)
		want := map[string]string{"text": "duration=713.77ms", "json": `"duration":"713.77ms"`}[format]
		if !strings.Contains(buf.String(), want) {
			t.Errorf("--log-format %s wrote %q, want %s", format, buf.String(), want)
		}
	}
}
