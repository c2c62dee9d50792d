package tools

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/noderpc/noderpc/master"
)

// EnvMaster gives --master its default: masterd URLs, comma-separated.
const EnvMaster = "NODERPC_MASTER"

// defaultMastersFile is looked for in the default directory when neither
// --master nor $NODERPC_MASTER names a master: masterd URLs, one per
// line (or comma-separated), # starting a comment.
const defaultMastersFile = "masters"

// masterURLs is the value of --master: repeatable, each value one URL or
// several comma-separated.
type masterURLs []string

func (m *masterURLs) String() string { return strings.Join(*m, ",") }

func (m *masterURLs) Set(v string) error {
	urls := splitURLs(v)
	if len(urls) == 0 {
		return errors.New("want a masterd URL, as in https://master1:1812")
	}
	*m = append(*m, urls...)
	return nil
}

// splitURLs splits s at commas and white space, dropping empty fields
// and # comments (to the end of their line).
func splitURLs(s string) []string {
	var urls []string
	for line := range strings.SplitSeq(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		urls = append(urls, strings.FieldsFunc(line, func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\r'
		})...)
	}
	return urls
}

// masterFlag registers --master on fs.
func (a *app) masterFlag(fs *flag.FlagSet) {
	fs.Var(&a.masters, "master", "masterd `URL` (https://host:port, http:// with --insecure), for nodes, node, config and call --all; repeat it or separate URLs with commas for several masters (default $"+EnvMaster+", or the URLs in "+defaultMastersFile+" in ~/.config/noderpc)")
}

// errNoMaster is the usage error of a command that needs a master when
// none is given anywhere.
var errNoMaster = fmt.Errorf("no masterd: give --master URL before the command (or set $%s, or list the URLs in %s in ~/.config/noderpc)", EnvMaster, defaultMastersFile)

// masterURLs returns the masters of --master, else of $NODERPC_MASTER,
// else of the masters file in the default directory; none is errNoMaster.
func (a *app) masterURLs() ([]string, error) {
	if len(a.masters) > 0 {
		return a.masters, nil
	}
	if urls := splitURLs(os.Getenv(EnvMaster)); len(urls) > 0 {
		return urls, nil
	}
	if dir := defaultCertDir(); dir != "" {
		p := filepath.Join(dir, defaultMastersFile)
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
			if urls := splitURLs(string(b)); len(urls) > 0 {
				return urls, nil
			}
			return nil, fmt.Errorf("%s lists no masterd URL; %w", p, errNoMaster)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("reading the masters file: %w", err)
		}
	}
	return nil, errNoMaster
}

// cluster returns the master.Cluster of the masters given; an error is a
// usage error (no master, or a URL that is not one).
func (a *app) cluster() (*master.Cluster, error) {
	urls, err := a.masterURLs()
	if err != nil {
		return nil, err
	}
	return master.NewCluster(urls, a.options())
}
