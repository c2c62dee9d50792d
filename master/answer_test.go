package master

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

// TestAnswersAreStrict checks how the client reads a node's answers:
// strict JSON, but fields it does not know are skipped, since a newer
// node may add some within a protocol version.
func TestAnswersAreStrict(t *testing.T) {
	const id = "9980:9990:1795317346.017856:92dd2f59a4f2486d"
	tests := []struct {
		name, body string
		want       string // a part of the protocol_error's message; "" for none
	}{
		{"known fields", `{"version":"1.2.3","protocol":1,"boot_id":"b","pid":7}`, ""},
		{"a field of a newer node", `{"version":"1.2.3","protocol":1,"boot_id":"b","pid":7,"cgroup":{"v":2}}`, ""},
		{"duplicate key", `{"version":"1.2.3","protocol":1,"protocol":2}`, `duplicate key "protocol"`},
		{"key in capitals", `{"VERSION":"1.2.3"}`, "keys are case-sensitive"},
		{"wrong type", `{"pid":"7"}`, `pid: want an integer, got the string "7"`},
		{"invalid UTF-8", "{\"version\":\"\xff\"}", "invalid UTF-8"},
		{"two objects", `{"pid":7}{"pid":8}`, "after the JSON value"},
	}
	for _, tt := range tests {
		c, _, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) {
			return answer{status: http.StatusOK, body: []byte(tt.body)}, nil
		})
		v, err := c.Version(context.Background())
		switch {
		case tt.want == "" && (err != nil || v.Version != "1.2.3" || v.PID != 7):
			t.Errorf("%s: Version answered %s = %+v, %v; want version 1.2.3, pid 7", tt.name, tt.body, v, err)
		case tt.want != "" && (!errors.Is(err, rpc.ErrProtocolError) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Version answered %s = %v, want a protocol_error saying %q", tt.name, tt.body, err, tt.want)
		}
	}

	// An error body is read the same way; one that is not an error
	// object leaves the kind to the status.
	for _, tt := range []struct {
		body string
		want rpc.Kind
	}{
		{`{"error":{"kind":"unknown_call","message":"gone","hint":"new field"}}`, rpc.KindUnknownCall},
		{`{"error":{"kind":"unknown_call","kind":"busy"}}`, rpc.KindBadRequest},
		{`{"ERROR":{"kind":"unknown_call"}}`, rpc.KindBadRequest},
	} {
		c, _, _ := newFakeClient(t, Options{}, func(int, request) (answer, error) {
			return answer{status: http.StatusBadRequest, body: []byte(tt.body)}, nil
		})
		_, err := c.WaitForFunction(context.Background(), rpc.WaitRequest{ID: id})
		if rpc.KindOf(err) != tt.want {
			t.Errorf("WaitForFunction answered 400 %s = %v, want kind %s", tt.body, err, tt.want)
		}
	}
}
