package membership

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		insecure bool
		want     string // canonical form; empty when refused
		why      string // part of the refusal
	}{
		{"https://m1.example:1812", false, "https://m1.example:1812", ""},
		{"https://m1.example:1812/", false, "https://m1.example:1812", ""},
		{"https://[::1]:1812", false, "https://[::1]:1812", ""},
		{"http://127.0.0.1:1812", true, "http://127.0.0.1:1812", ""},
		{"http://localhost:1812", true, "http://localhost:1812", ""},
		{"http://[::1]:1812", true, "http://[::1]:1812", ""},
		{"http://m1.example:1812", false, "", "noded serves TLS"},
		{"https://127.0.0.1:1812", true, "", "--insecure, which speaks plain HTTP only"},
		{"http://10.0.0.1:1812", true, "", "loopback addresses only"},
		{"ftp://m1:1812", false, "", "want https://HOST:PORT"},
		{"m1:1812", false, "", "want https://HOST:PORT"},
		{"https://m1.example", false, "", "with the port given"},
		{"https://m1.example:1812/api", false, "", "nothing more"},
		{"https://u@m1.example:1812", false, "", "nothing more"},
		{"https://m1.example:1812?x=1", false, "", "nothing more"},
		{"https://%zz", false, "", "want https://HOST:PORT"},
	} {
		got, err := CheckURL("--master", tc.raw, tc.insecure)
		switch {
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("CheckURL(%q, insecure=%v) = %q, %v; want %q, nil", tc.raw, tc.insecure, got, err, tc.want)
		case tc.want == "" && err == nil:
			t.Errorf("CheckURL(%q, insecure=%v) = %q, nil; want an error saying %q", tc.raw, tc.insecure, got, tc.why)
		case tc.want == "" && (!errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tc.why) || !strings.HasPrefix(err.Error(), "--master ")):
			t.Errorf("CheckURL(%q, insecure=%v) = %v; want a *URLError naming --master and saying %q", tc.raw, tc.insecure, err, tc.why)
		}
	}
}
