package nodetest

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/noderpc/noderpc/rpc"
)

// WriteNotActive answers w as a standby masterd does: 421, kind
// not_active, naming active in rpc.HeaderActiveMaster, or, when active
// is empty, saying that an election is under way. A fake master of a
// test answers with it the cases a real group produces only in races
// too short to catch.
func WriteNotActive(w http.ResponseWriter, active string) {
	msg := "no master is active; an election is under way"
	if active != "" {
		w.Header().Set(rpc.HeaderActiveMaster, active)
		msg = "not active; the active master is " + active
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMisdirectedRequest)
	body, _ := rpc.Marshal(rpc.ErrorResponse{Error: rpc.Errorf(rpc.KindNotActive, "%s", msg)})
	w.Write(body)
}

// master is a masterd of a test, as [AwaitActive] takes it.
type master interface {
	comparable
	URL() string
}

// ProbeMaster lists the nodes of the master at url with hc, and returns
// the status of the answer (0 when there was none) and the master a
// standby names.
func ProbeMaster(hc *http.Client, url string) (status int, active string) {
	resp, err := hc.Get(url + rpc.PathListNodes)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(rpc.HeaderActiveMaster)
}

// AwaitActive polls the masters of ms but skip (nil for none) with probe
// (see [ProbeMaster]) until one is active and every other answers
// not_active naming it, and returns its index; the test fails after 30s.
func AwaitActive[M master](t testing.TB, ms []M, skip M, probe func(M) (status int, active string)) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if i, ok := activeNamed(ms, skip, probe); ok {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("no masterd became active with the others naming it within 30s")
		}
		time.Sleep(20 * time.Millisecond) // polling the masters' answers, which have no event to wait on
	}
}

// activeNamed returns the index of the one master of ms but skip that
// answers, if every other answers not_active naming it.
func activeNamed[M master](ms []M, skip M, probe func(M) (int, string)) (int, bool) {
	active, named := -1, map[string]bool{}
	for i, m := range ms {
		if m == skip {
			continue
		}
		switch status, leader := probe(m); status {
		case http.StatusOK:
			if active >= 0 {
				return 0, false
			}
			active = i
		case http.StatusMisdirectedRequest:
			named[leader] = true
		default:
			return 0, false
		}
	}
	if active < 0 {
		return 0, false
	}
	for leader := range named {
		if leader != ms[active].URL() {
			return 0, false
		}
	}
	return active, true
}
