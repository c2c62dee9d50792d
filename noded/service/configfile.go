package service

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The configuration file: a flat TOML document whose keys are a daemon's
// flag names, read under the command line and written by --print-config.

// ApplyConfig sets the flags of fs from a TOML document whose keys are
// flag names, except those in skip (given on the command line) and
// those in commandLineOnly, which are not keys at all. Unknown keys and
// values of the wrong type are errors: a typo in a key must not
// silently leave the default in force.
func ApplyConfig(fs *flag.FlagSet, data []byte, skip, commandLineOnly map[string]bool) error {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("line %d, column %d: %v", row, col, de.Error())
		}
		return err
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || commandLineOnly[k] {
			// The keys are spelled as the flags, with dashes: say so to
			// one who wrote max_running or Max_Running.
			if alt := strings.ReplaceAll(strings.ToLower(k), "_", "-"); alt != k && fs.Lookup(alt) != nil && !commandLineOnly[alt] {
				errs = append(errs, fmt.Errorf("unknown key %q: write %s, as the flag --%s is spelled", k, alt, alt))
				continue
			}
			errs = append(errs, fmt.Errorf("unknown key %q (the keys are the flag names of %s --help, without the dashes, except %s)", k, fs.Name(), strings.Join(sortedKeys(commandLineOnly), ", ")))
			continue
		}
		if skip[k] {
			continue
		}
		text, err := flagText(f, doc[k])
		if err == nil {
			if serr := fs.Set(k, text); serr != nil {
				err = fmt.Errorf("invalid value %q: %v", text, serr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %v", k, err))
		}
	}
	return errors.Join(errs...)
}

// flagText turns a TOML value into the text its flag parses, insisting on
// the TOML type that matches the flag's: a duration is a string like
// "10s", a number is an integer, a switch is true or false.
func flagText(f *flag.Flag, v any) (string, error) {
	var want any
	if g, ok := f.Value.(flag.Getter); ok {
		want = g.Get()
	}
	switch want.(type) {
	case bool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("want true or false, got %s", tomlType(v))
	case time.Duration:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a duration string such as \"10s\" or \"15m\", got %s", tomlType(v))
	case int, int64, uint, uint64:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want an integer, got %s", tomlType(v))
	case float64:
		switch n := v.(type) {
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		case int64:
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want a number, got %s", tomlType(v))
	default:
		// Strings, and flag types that parse text of their own.
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a string, got %s", tomlType(v))
	}
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table (the file is flat: key = value lines only)"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// WriteConfig writes the values of fs's flags but those in
// commandLineOnly as a configuration file that ApplyConfig reads back to
// the same values, each key under its help text.
func WriteConfig(w io.Writer, fs *flag.FlagSet, commandLineOnly map[string]bool) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s configuration: every key is the flag of the same name (%s --help);\n# a flag given on the command line wins over its key here.\n", fs.Name(), fs.Name())
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || commandLineOnly[f.Name] {
			return
		}
		var v any = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			switch x := g.Get().(type) {
			case bool, int, int64, uint, uint64, float64:
				v = x
			}
		}
		// Marshalling a one-key table quotes strings the TOML way.
		line, merr := toml.Marshal(map[string]any{f.Name: v})
		if merr != nil {
			err = fmt.Errorf("flag %s: %w", f.Name, merr)
			return
		}
		_, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&buf, "\n# %s\n", usage)
		buf.Write(line)
	})
	if err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
