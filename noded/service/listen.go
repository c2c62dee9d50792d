package service

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
)

// CheckListen refuses a --listen address net.Listen would refuse for its
// form, so that --check-config finds it and the daemon exits 2, not 1.
func CheckListen(listen string) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:1811 or [::1]:1811: %v", listen, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("--listen %q: the port must be a number from 0 to 65535", listen)
	}
	return nil
}

// CheckLoopback refuses a plain-HTTP listen address that is not
// loopback: whoever reaches a daemon without authentication can run
// anything on its node, or speak for any node to a master.
func CheckLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--insecure refuses --listen %q: plain HTTP is only served on loopback addresses (127.0.0.1, ::1)", listen)
	}
	return nil
}

// CheckServing checks how the daemon called name is to serve: plain HTTP
// under insecure, on a loopback listen address only and without
// certificate files, else HTTPS with all three of files. howTo, in
// parentheses in the error for missing files, says where the files come
// from.
func CheckServing(name string, insecure bool, files TLSFiles, listen, howTo string) error {
	given := files.Cert != "" || files.Key != "" || files.ClientCA != ""
	switch {
	case insecure && given:
		return errors.New("--insecure serves plain HTTP, which takes no --cert, --key or --client-ca: drop one or the other")
	case insecure:
		return CheckLoopback(listen)
	case files.Cert == "" || files.Key == "" || files.ClientCA == "":
		return errors.New(name + " serves HTTPS with client certificates: pass --cert FILE --key FILE --client-ca FILE " +
			"(" + howTo + "), or --insecure to serve plain HTTP on a loopback --listen address")
	}
	return nil
}

// Logger returns the logger --log-format (text or json) and --log-level
// ask for, writing to w.
func Logger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: readableDuration}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// readableDuration writes a duration as Go does ("713.77ms", "2m3s") in
// either log format: slog's JSON handler would write bare nanoseconds,
// and a duration should read the same in the journal and in a shipper.
func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
