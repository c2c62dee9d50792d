package tools

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/noderpc/noderpc/master"
)

// Environment variables that give --cert, --key and --ca their defaults.
const (
	EnvCert = "NODERPC_CERT"
	EnvKey  = "NODERPC_KEY"
	EnvCA   = "NODERPC_CA"
)

// Files looked for in the default directory when neither a flag nor the
// environment names them.
const (
	defaultCertFile = "client.crt"
	defaultKeyFile  = "client.key"
	defaultCAFile   = "ca.crt"
)

// defaultCertDir is where an operator puts the client certificate so as
// never to type it: $XDG_CONFIG_HOME/noderpc, usually ~/.config/noderpc.
func defaultCertDir() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "noderpc")
}

// tlsFlags registers --cert, --key and --ca on fs.
func (a *app) tlsFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.certFile, "cert", "", "client certificate `file` (PEM) to present to nodes (default $"+EnvCert+", or "+defaultCertFile+" in ~/.config/noderpc)")
	fs.StringVar(&a.keyFile, "key", "", "private key `file` (PEM) of --cert (default $"+EnvKey+", or "+defaultKeyFile+" in ~/.config/noderpc)")
	fs.StringVar(&a.caFile, "ca", "", "cluster CA `file` (PEM) that node certificates must chain to (default $"+EnvCA+", or "+defaultCAFile+" in ~/.config/noderpc)")
}

// loadTLS sets a.tls from --cert, --key and --ca, each defaulting to its
// environment variable and then to its file in the default directory. With
// --insecure it only checks that no certificate was asked for on the
// command line.
func (a *app) loadTLS() error {
	if a.insecure {
		if a.certFile != "" || a.keyFile != "" || a.caFile != "" {
			return fmt.Errorf("--insecure talks plain HTTP, which takes no --cert, --key or --ca: drop one or the other")
		}
		return nil
	}
	dir := defaultCertDir()
	var missing []string
	for _, f := range []struct {
		flag, env, file string
		v               *string
	}{
		{"--cert", EnvCert, defaultCertFile, &a.certFile},
		{"--key", EnvKey, defaultKeyFile, &a.keyFile},
		{"--ca", EnvCA, defaultCAFile, &a.caFile},
	} {
		if *f.v == "" {
			*f.v = os.Getenv(f.env)
		}
		if *f.v == "" && dir != "" {
			if p := filepath.Join(dir, f.file); fileExists(p) {
				*f.v = p
			}
		}
		if *f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no %s: nodes require a client certificate; pass --cert, --key and --ca (or set $%s, $%s and $%s, or put %s, %s and %s in %s; make them with noderpc certs), or --insecure for a noded serving plain HTTP on loopback",
			strings.Join(missing, ", "), EnvCert, EnvKey, EnvCA, defaultCertFile, defaultKeyFile, defaultCAFile, displayDir(dir))
	}
	cfg, err := master.LoadTLS(a.certFile, a.keyFile, a.caFile)
	if err != nil {
		return err
	}
	a.tls = cfg
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func displayDir(dir string) string {
	if dir == "" {
		return "~/.config/noderpc"
	}
	return dir
}
