package tools

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
)

// A group whose masters are all standbys for longer than the command
// waits (--unreachable-after) has no master to answer: noderpc says so
// and exits 3, as when no master can be reached.
func TestNoMasterActiveExits3(t *testing.T) {
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		nodetest.WriteNotActive(w, "")
	}))
	defer standby.Close()
	code, stdout, stderr := run(t, "", "--master", standby.URL, "nodes")
	if code != ExitUnreachable || stdout != "" || !strings.Contains(stderr, "no master is active; an election is under way") {
		t.Errorf("noderpc nodes with a standby only = exit %d, %q, %q; want %d and the standby's answer on stderr", code, stdout, stderr, ExitUnreachable)
	}
}
