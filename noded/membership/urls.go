package membership

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrBadURL is matched (errors.Is) by every *URLError.
var ErrBadURL = errors.New("bad URL")

// URLError is a master or advertised URL noded cannot use.
type URLError struct {
	// Flag names where the URL came from, e.g. "--master" or "masterd's
	// list of masters".
	Flag string
	URL  string
	// Reason says what is wrong and what to give instead.
	Reason string
}

// Error reads `--master "ftp://m1": want https://HOST:PORT`.
func (e *URLError) Error() string { return fmt.Sprintf("%s %q: %s", e.Flag, e.URL, e.Reason) }

// Is makes every *URLError match ErrBadURL.
func (e *URLError) Is(target error) bool { return target == ErrBadURL }

// CheckURL returns the canonical form ("scheme://host:port") of a master
// or advertised URL, or a *URLError. A daemon serving TLS speaks https
// only; one run with insecure plain http, and then only to loopback
// addresses: a plain-HTTP hello carries no proof of who sends it, so it
// must not leave the machine.
func CheckURL(flag, raw string, insecure bool) (string, error) {
	bad := func(format string, args ...any) error {
		return &URLError{Flag: flag, URL: raw, Reason: fmt.Sprintf(format, args...)}
	}
	want := "https"
	if insecure {
		want = "http"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", bad("%v; want %s://HOST:PORT", err, want)
	}
	switch {
	case u.Scheme != want && (u.Scheme == "http" || u.Scheme == "https"):
		if insecure {
			return "", bad("noded runs with --insecure, which speaks plain HTTP only: want http://HOST:PORT on a loopback address, or drop --insecure")
		}
		return "", bad("noded serves TLS and speaks to masters with its certificate: want https://HOST:PORT, or run with --insecure for plain HTTP on loopback")
	case u.Scheme != want:
		return "", bad("want %s://HOST:PORT", want)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return "", bad("want %s://HOST:PORT and nothing more (no user, path or query)", want)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return "", bad("want %s://HOST:PORT with the port given", want)
	}
	if insecure && !isLoopback(host) {
		return "", bad("plain HTTP (--insecure) goes to loopback addresses only (127.0.0.1, ::1, localhost)")
	}
	return want + "://" + net.JoinHostPort(host, port), nil
}

// isLoopback reports whether host names this machine by a loopback
// address or as localhost.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostPort returns the host:port of a URL CheckURL accepted.
func hostPort(canonical string) string {
	_, rest, _ := strings.Cut(canonical, "://")
	return rest
}
