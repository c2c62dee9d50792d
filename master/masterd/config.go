package masterd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/noderpc/noderpc/noded/service"
	"github.com/noderpc/noderpc/rpc"
)

// Config is everything masterd can be told on its command line or in its
// configuration file.
type Config struct {
	Listen string
	// Advertise is masterd's own URL as nodes reach it, listed in every
	// Session.Masters; empty means derived from Listen.
	Advertise         string
	StateDir          string
	SessionTimeout    time.Duration
	MaxSessionTimeout time.Duration
	Insecure          bool
	Cert              string
	Key               string
	ClientCA          string
	MaxConns          int
	HeadTimeout       time.Duration
	AddrFile          string
	// CheckNodes has masterd call each node at its advertised URL after
	// its hello, to record whether it answers (rpc.Node.Reachable).
	CheckNodes bool
	// Etcd are the endpoints of the etcd cluster masterd is elected
	// through and keeps its registry in, comma-separated; empty runs a
	// single master on the bbolt store in StateDir.
	Etcd string
	// EtcdCert, EtcdKey and EtcdCA are the etcd client's TLS files: all
	// or none.
	EtcdCert string
	EtcdKey  string
	EtcdCA   string
	// EtcdPrefix is the root of masterd's keys in etcd, shared by every
	// master of one group.
	EtcdPrefix string
	// LeaseTTL is the TTL of the etcd lease a master holds while a
	// candidate: how long a dead active master stays active in etcd's
	// eyes, so about how long a failover takes.
	LeaseTTL time.Duration
	// Priority prefers a candidate when no master is active: the highest
	// takes over. It never deposes an active master.
	Priority  int
	LogFormat string
	LogLevel  string
	Version   bool

	ConfigFile  string
	CheckConfig bool
	PrintConfig bool
}

// Defaults of masterd's flags.
const (
	// DefaultListen is loopback only, as noded's: a master must be
	// opened to the network on purpose. 1812 is the port after noded's.
	DefaultListen = "127.0.0.1:1812"
	// DefaultStateDir holds the registry file.
	DefaultStateDir = "/var/lib/masterd"
	// DefaultSessionTimeout is how long a node's session lives without a
	// renewal, unless the node asks for longer.
	DefaultSessionTimeout = 10 * time.Second
	// DefaultMaxSessionTimeout bounds the session timeout a node may ask
	// for: a node that asks for more gets this.
	DefaultMaxSessionTimeout = 60 * time.Second
	// DefaultMaxConns holds a fleet of 10,000 nodes, each with one
	// session connection, and room for clients.
	DefaultMaxConns = 65536
	// DefaultHeadTimeout is noded's: a TLS handshake and a request head
	// across a slow link.
	DefaultHeadTimeout = 10 * time.Second
	// DefaultEtcdPrefix roots masterd's keys in etcd.
	DefaultEtcdPrefix = "/noderpc"
	// DefaultLeaseTTL bounds a failover after a crash to about 5 s: long
	// enough that a busy etcd or a slow network does not depose a live
	// master, short next to a node's 10 s session.
	DefaultLeaseTTL = 5 * time.Second
	// DefaultConfigFile is read when it exists.
	DefaultConfigFile = "/etc/masterd/masterd.conf"
)

// minLeaseTTL is the shortest --lease-ttl: the active master steps
// down max(TTL/3, 1s) before its lease could lapse and renews it three
// times within what is left, which below 2 s is a busy loop. etcd also
// refuses shorter leases on its default timings.
const minLeaseTTL = 2 * time.Second

// minSessionTimeout is the shortest --session-timeout: below it a node's
// renewals (a third of it apart) would be a busy loop.
const minSessionTimeout = 300 * time.Millisecond

// UsageError is a command line or configuration masterd cannot run with;
// Main exits 2 for it.
type UsageError = service.UsageError

const usage = `masterd: the noderpc master daemon. Nodes say hello to it and hold a
session; it knows every node, up or down, and their configuration.

  masterd --cert /etc/masterd/master.crt --key /etc/masterd/master.key \
      --client-ca /etc/masterd/ca.crt --listen 0.0.0.0:1812 --state-dir /var/lib/masterd
  masterd --insecure --listen 127.0.0.1:1812 --state-dir /tmp/m   # plain HTTP, loopback only
  masterd ... --advertise https://m1.example:1812 --etcd e1:2379,e2:2379,e3:2379 --priority 1
      # one of several masters: one is elected active through etcd (doc/ha.md)

Every flag but --config, --check-config, --print-config and --version is
also a key of the configuration file (TOML), e.g. session-timeout = "10s".
See doc/membership.md.

Flags:
`

// ParseFlags parses masterd's command line, with the configuration file
// it names (or the default one, when it exists) under it: see
// service.ParseFlags. The flag set is returned for --print-config.
func ParseFlags(args []string, help io.Writer) (Config, *flag.FlagSet, error) {
	var c Config
	set, err := service.ParseFlags("masterd", usage, args, help, &c.ConfigFile, c.flags)
	return c, set, err
}

func (c *Config) flags(set *flag.FlagSet) {
	set.StringVar(&c.Listen, "listen", DefaultListen, "`address` to serve on (host:port; port 0 picks a free one)")
	set.StringVar(&c.Advertise, "advertise", "", "this master's `URL` as nodes reach it, sent to every node in its list of masters (default: derived from --listen)")
	set.StringVar(&c.StateDir, "state-dir", DefaultStateDir, "`directory` of the registry file (nodes, their facts, configuration, membership version)")
	set.DurationVar(&c.SessionTimeout, "session-timeout", DefaultSessionTimeout, "how long a node's session lives without a renewal, unless the node asks for longer")
	set.DurationVar(&c.MaxSessionTimeout, "max-session-timeout", DefaultMaxSessionTimeout, "the longest session timeout a node may ask for")
	set.BoolVar(&c.Insecure, "insecure", false, "serve plain HTTP without authentication (loopback addresses only) instead of HTTPS with client certificates")
	set.StringVar(&c.Cert, "cert", "", "this master's certificate `file` (PEM), from noderpc certs issue --master; reloaded on SIGHUP")
	set.StringVar(&c.Key, "key", "", "the private key `file` (PEM) of --cert; reloaded on SIGHUP")
	set.StringVar(&c.ClientCA, "client-ca", "", "the cluster CA `file` (PEM) client certificates must chain to; reloaded on SIGHUP")
	set.IntVar(&c.MaxConns, "max-conns", DefaultMaxConns, "most connections served at once (each node holds one for its session)")
	set.DurationVar(&c.HeadTimeout, "head-timeout", DefaultHeadTimeout, "time a connection has for its TLS handshake and each request's line and headers")
	set.StringVar(&c.AddrFile, "addr-file", "", "write the address actually served on to `file` once listening (for scripts and port 0)")
	set.BoolVar(&c.CheckNodes, "check-nodes", true, "after each hello, call the node at its advertised URL and record whether it answers")
	set.StringVar(&c.Etcd, "etcd", "", "etcd `endpoints` (comma-separated host:port or URLs): elect one active master among all those of --etcd-prefix and keep the registry in etcd; empty: a single master with its registry in --state-dir (doc/ha.md)")
	set.StringVar(&c.EtcdCert, "etcd-cert", "", "the etcd client's certificate `file` (PEM); with --etcd-key and --etcd-ca")
	set.StringVar(&c.EtcdKey, "etcd-key", "", "the private key `file` (PEM) of --etcd-cert")
	set.StringVar(&c.EtcdCA, "etcd-ca", "", "the CA `file` (PEM) etcd's server certificates must chain to")
	set.StringVar(&c.EtcdPrefix, "etcd-prefix", DefaultEtcdPrefix, "the `key prefix` of this group's election, candidates and registry in etcd")
	set.DurationVar(&c.LeaseTTL, "lease-ttl", DefaultLeaseTTL, "TTL of this master's etcd lease, whole seconds, at least 2s: a crashed active master is replaced about this long after it died")
	set.IntVar(&c.Priority, "priority", 0, "preference of this master when no master is active: the live candidate of highest priority takes over (ties: the oldest); it never deposes an active master")
	set.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	set.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	set.BoolVar(&c.Version, "version", false, "print the version and exit")
	set.StringVar(&c.ConfigFile, "config", DefaultConfigFile, "configuration `file` (TOML; keys are the flag names, flags given on the command line win); '' for none")
	set.BoolVar(&c.CheckConfig, "check-config", false, "check the configuration file and flags, then exit: 0 when valid, 2 when not")
	set.BoolVar(&c.PrintConfig, "print-config", false, "print the effective configuration as a configuration file and exit")
}

// validate reports what no daemon could run with.
func (c *Config) validate() error {
	switch {
	case c.SessionTimeout < minSessionTimeout:
		return fmt.Errorf("--session-timeout must be at least %s, got %s", minSessionTimeout, c.SessionTimeout)
	case c.MaxSessionTimeout < c.SessionTimeout:
		return fmt.Errorf("--max-session-timeout (%s) must be at least --session-timeout (%s)", c.MaxSessionTimeout, c.SessionTimeout)
	case c.MaxConns <= 0:
		return fmt.Errorf("--max-conns must be > 0, got %d", c.MaxConns)
	case c.HeadTimeout <= 0:
		return fmt.Errorf("--head-timeout must be > 0, got %s", c.HeadTimeout)
	case c.StateDir == "":
		return errors.New("--state-dir is required: masterd keeps its registry there")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	}
	if _, err := service.Logger(io.Discard, c.LogFormat, c.LogLevel); err != nil {
		return err
	}
	if err := c.validateEtcd(); err != nil {
		return err
	}
	if err := service.CheckListen(c.Listen); err != nil {
		return err
	}
	if c.Advertise != "" {
		if _, err := checkURL(c.Advertise, c.Insecure); err != nil {
			return fmt.Errorf("--advertise: %w", err)
		}
	}
	return service.CheckServing("masterd", c.Insecure, c.tlsFiles(), c.Listen,
		"make them with noderpc certs init and noderpc certs issue --master NAME")
}

// validateEtcd checks the flags of the election. Without --etcd, none
// of the etcd client's own may be given: they would be silently unused.
func (c *Config) validateEtcd() error {
	tlsGiven := c.EtcdCert != "" || c.EtcdKey != "" || c.EtcdCA != ""
	if c.Etcd == "" {
		if tlsGiven {
			return errors.New("--etcd-cert, --etcd-key and --etcd-ca are the etcd client's: they need --etcd")
		}
		return nil
	}
	eps, err := c.etcdEndpoints()
	if err != nil {
		return err
	}
	switch {
	case tlsGiven && (c.EtcdCert == "" || c.EtcdKey == "" || c.EtcdCA == ""):
		return errors.New("the etcd client's TLS takes all of --etcd-cert, --etcd-key and --etcd-ca, or none")
	case tlsGiven && slices.ContainsFunc(eps, func(ep string) bool { return strings.HasPrefix(ep, "http://") }):
		// The etcd client speaks plain HTTP to an http:// endpoint
		// whatever TLS it is given.
		return fmt.Errorf("--etcd %s: an http:// endpoint is not spoken to over TLS; with --etcd-cert write https://HOST:PORT or HOST:PORT", c.Etcd)
	case !strings.HasPrefix(c.EtcdPrefix, "/") || len(c.EtcdPrefix) < 2 || strings.HasSuffix(c.EtcdPrefix, "/"):
		return fmt.Errorf("--etcd-prefix must start with / and not end with one, e.g. %s; got %q", DefaultEtcdPrefix, c.EtcdPrefix)
	case c.LeaseTTL < minLeaseTTL:
		return fmt.Errorf("--lease-ttl must be at least %s, got %s", minLeaseTTL, c.LeaseTTL)
	case c.LeaseTTL%time.Second != 0:
		// etcd counts a lease's TTL in whole seconds.
		return fmt.Errorf("--lease-ttl must be whole seconds (etcd's unit), got %s", c.LeaseTTL)
	}
	return nil
}

// etcdEndpoints splits --etcd into its endpoints: host:port, or an
// http(s) URL of one.
func (c *Config) etcdEndpoints() ([]string, error) {
	var eps []string
	for ep := range strings.SplitSeq(c.Etcd, ",") {
		ep = strings.TrimSpace(ep)
		hostPort := ep
		if u, err := url.Parse(ep); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			hostPort = u.Host
			if u.Path != "" && u.Path != "/" {
				return nil, fmt.Errorf("--etcd: endpoint %q: want HOST:PORT or a URL with nothing after the port", ep)
			}
		}
		// A port of digits: an endpoint such as ftp://h:1 splits into
		// host "ftp" and port "//h:1", which the client dials forever.
		if host, port, err := net.SplitHostPort(hostPort); err != nil || host == "" || !validPort(port) {
			return nil, fmt.Errorf("--etcd: endpoint %q: want HOST:PORT or http(s)://HOST:PORT", ep)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// validPort reports whether port is a TCP port number, 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// checkURL parses u as the URL of a daemon: http or https (https unless
// insecure), a host and a port, nothing else.
func checkURL(u string, insecure bool) (*url.URL, error) {
	p, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", u, err)
	}
	want := "https"
	if insecure {
		want = "http"
	}
	switch {
	case p.Scheme != want:
		return nil, fmt.Errorf("%q: want a %s:// URL", u, want)
	case p.Host == "" || p.Port() == "":
		return nil, fmt.Errorf("%q: want %s://HOST:PORT", u, want)
	case p.Path != "" && p.Path != "/", p.RawQuery != "", p.User != nil:
		return nil, fmt.Errorf("%q: want %s://HOST:PORT with nothing after the port", u, want)
	}
	return p, nil
}

// advertised is the URL masterd lists for itself: --advertise, or the
// address served on with its scheme. An unspecified host (0.0.0.0, ::)
// is replaced by the loopback address, which only suits tests:
// production sets --advertise.
func (c *Config) advertised(served string) string {
	if c.Advertise != "" {
		return c.Advertise
	}
	scheme := "https"
	if c.Insecure {
		scheme = "http"
	}
	host, port, err := net.SplitHostPort(served)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
			if ip.To4() == nil {
				host = "::1"
			}
		}
		served = net.JoinHostPort(host, port)
	}
	return scheme + "://" + served
}

// tlsFiles are the files of masterd's TLS identity.
func (c *Config) tlsFiles() service.TLSFiles {
	return service.TLSFiles{Cert: c.Cert, Key: c.Key, ClientCA: c.ClientCA, Role: rpc.RoleMaster, IssueHint: "noderpc certs issue --master NAME"}
}
