package rpc

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCallIDRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 3, 15, 46, 17856000, time.UTC)
	id := NewCallID(9980, 9990, at)
	s := id.String()
	got, err := ParseCallID(s)
	if err != nil {
		t.Fatalf("ParseCallID(%q): %v", s, err)
	}
	if got.PPID != id.PPID || got.CPID != id.CPID || got.Random != id.Random || !got.Time.Equal(at) {
		t.Errorf("ParseCallID(%q) = %+v, want %+v", s, got, id)
	}
	if want := fmt.Sprintf("9980:9990:1795317346.017856:%016x", id.Random); s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	if NewCallID(1, 2, at).Random == NewCallID(1, 2, at).Random {
		t.Errorf("two IDs of the same process and time share their random part")
	}
}

func TestParseCallIDRejects(t *testing.T) {
	for _, s := range []string{
		"", "1:2:3", "1:2:3.000001:0123456789abcdef:5", "x:2:3.000001:0123456789abcdef",
		"1:0:3.000001:0123456789abcdef", "1:2:3:0123456789abcdef", "1:2:3.1:0123456789abcdef",
		"1:2:3.000001:0123", "1:2:3.000001:0123456789abcdeg", "-1:2:3.000001:0123456789abcdef",
	} {
		if _, err := ParseCallID(s); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ParseCallID(%q) = %v, want bad_request", s, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		body    string
		wantErr bool
	}{
		{`{"fn_name":"echo","timeout":1}`, false},
		{` {"fn_name":"echo","timeout":0} `, false},
		{` {"fn_name":"echo"} `, true}, // timeout is required
		{``, true},
		{`{"fn_name":"echo","bogus":1}`, true},
		{`{"fn_name":1}`, true},
		{`{"fn_name":"echo"} {}`, true},
		{`{"fn_name":"echo"`, true},
		{`[]`, true},
	}
	for _, tt := range tests {
		var req StartRequest
		err := Decode([]byte(tt.body), &req)
		if (err != nil) != tt.wantErr {
			t.Errorf("Decode(%q) = %v, want error %v", tt.body, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("Decode(%q) = %v, want kind bad_request", tt.body, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		req  StartRequest
		want bool
	}{
		{StartRequest{FnName: "echo"}, true},
		{StartRequest{}, false},
		{StartRequest{FnName: "echo", Timeout: -1}, false},
		{StartRequest{FnName: "echo", AbortAfter: -0.5}, false},
		{StartRequest{FnName: "echo", LogOffset: -1}, false},
		{StartRequest{FnName: "echo", RequestID: string(make([]byte, MaxRequestIDLen+1))}, false},
		{StartRequest{FnName: "echo", Release: []string{"1:2:1700000000.000001:0123456789abcdef"}}, true},
		{StartRequest{FnName: "echo", Release: manyIDs(MaxRelease)}, true},
		{StartRequest{FnName: "echo", Release: manyIDs(MaxRelease + 1)}, false},
		{StartRequest{FnName: "echo", Release: []string{"1:2:1700000000.000001:0123456789abcdef", "1:2:3"}}, false},
		{StartRequest{FnName: "echo", Release: []string{""}}, false},
	}
	for _, tt := range tests {
		if err := tt.req.Validate(); (err == nil) != tt.want {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.req, err, tt.want)
		}
	}
}

// manyIDs returns n well-formed call IDs.
func manyIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewCallID(1, i+1, time.Unix(1_700_000_000, 0)).String()
	}
	return ids
}

// A release the node cannot take refuses the whole start, and says which
// ID is wrong.
func TestValidateRelease(t *testing.T) {
	req := StartRequest{FnName: "echo", Release: []string{manyIDs(1)[0], "1:2:3"}}
	err := req.Validate()
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), `release[1]: malformed function-call ID "1:2:3"`) {
		t.Errorf("Validate of a release with a malformed second ID = %v, want bad_request naming release[1]", err)
	}
	req = StartRequest{FnName: "echo", Release: manyIDs(MaxRelease + 1)}
	if err := req.Validate(); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "257 IDs, more than 256") {
		t.Errorf("Validate of a release of %d IDs = %v, want bad_request saying the bound", MaxRelease+1, err)
	}
}

func TestKindsAndStatuses(t *testing.T) {
	// The statuses are numbers in package wire; net/http names them here.
	for kind, want := range map[Kind]int{
		KindBadRequest: http.StatusBadRequest, KindForbidden: http.StatusForbidden,
		KindUnknownFunction: http.StatusNotFound, KindUnknownCall: http.StatusNotFound,
		KindUnknownSession: http.StatusNotFound, KindUnknownNode: http.StatusNotFound,
		KindNotActive: http.StatusMisdirectedRequest,
		KindLost:      http.StatusGone, KindTooLarge: http.StatusRequestEntityTooLarge,
		KindBusy: http.StatusServiceUnavailable, KindShuttingDown: http.StatusServiceUnavailable,
		KindInternal: http.StatusInternalServerError, KindFunctionFailed: http.StatusInternalServerError,
	} {
		if got := kind.HTTPStatus(); got != want {
			t.Errorf("%s.HTTPStatus() = %d, want %d", kind, got, want)
		}
	}
	tests := []struct {
		status int
		want   Kind
	}{
		{http.StatusBadRequest, KindBadRequest},
		{http.StatusGone, KindLost},
		{http.StatusRequestEntityTooLarge, KindTooLarge},
		{http.StatusServiceUnavailable, KindBusy},
		{http.StatusTooManyRequests, KindBusy},
		{http.StatusBadGateway, KindInternal},
		{http.StatusTeapot, KindBadRequest},
	}
	for _, tt := range tests {
		if got := KindFromStatus(tt.status); got != tt.want {
			t.Errorf("KindFromStatus(%d) = %s, want %s", tt.status, got, tt.want)
		}
	}
	err := fmt.Errorf("waiting: %w", Errorf(KindBusy, "full"))
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrLost) || KindOf(err) != KindBusy {
		t.Errorf("a wrapped busy error does not match only ErrBusy: %v", err)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   float64
		want time.Duration
	}{
		{0, 0}, {-1, 0}, {1.5, 1500 * time.Millisecond}, {1e300, time.Duration(1<<63 - 1)},
		{1e-10, time.Nanosecond}, {5e-324, time.Nanosecond},
	}
	for _, tt := range tests {
		if got := Duration(tt.in); got != tt.want {
			t.Errorf("Duration(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestDecodeErrorAnswer: a daemon's error object comes back as it was
// sent; anything else gets the kind of its status and a clipped quote.
func TestDecodeErrorAnswer(t *testing.T) {
	got := DecodeErrorAnswer(404, []byte(`{"error":{"kind":"unknown_call","message":"no call x"}}`))
	if got.Kind != KindUnknownCall || got.Message != "no call x" {
		t.Errorf("daemon's answer = %+v, want its unknown_call", got)
	}
	long := strings.Repeat("x", 500)
	got = DecodeErrorAnswer(502, []byte(" <html>"+long+"</html>\n"))
	if got.Kind != KindFromStatus(502) || !strings.HasPrefix(got.Message, "HTTP 502: <html>xxx") || len(got.Message) > 220 {
		t.Errorf("proxy's answer = %+v, want kind %s and a clipped quote", got, KindFromStatus(502))
	}
	if got := DecodeErrorAnswer(503, []byte(`{"error":{"message":"no kind"}}`)); got.Kind != KindFromStatus(503) {
		t.Errorf("error object without a kind = %+v, want the status's kind", got)
	}
}

// AnswersRequests reads the table of kinds and statuses: every kind
// doc/protocol.md lists under "Errors of the request" is one, and a
// call's kinds, the client's own and kinds rpc does not declare are not.
func TestKindAnswersRequests(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		want bool
	}{
		{KindBadRequest, true},
		{KindForbidden, true},
		{KindTLSMismatch, true},
		{KindUnknownFunction, true},
		{KindUnknownCall, true},
		{KindUnknownSession, true},
		{KindUnknownNode, true},
		{KindNotActive, true},
		{KindLost, true},
		{KindTooLarge, true},
		{KindBusy, true},
		{KindShuttingDown, true},
		{KindInternal, true},
		{KindFunctionFailed, false},
		{KindProtocolError, false},
		{KindResultTooLarge, false},
		{KindCancelled, false},
		{KindAborted, false},
		{KindUnreachable, false},
		{KindCertificate, false},
		{"no_such_kind", false},
		{"Busy", false},
		{"", false},
	} {
		if got := tc.kind.AnswersRequests(); got != tc.want {
			t.Errorf("%q.AnswersRequests() = %v, want %v", tc.kind, got, tc.want)
		}
	}
}

// EndsCalls holds exactly the kinds doc/protocol.md lists for a call,
// and no kind also answers requests.
func TestKindEndsCalls(t *testing.T) {
	calls := []Kind{KindFunctionFailed, KindProtocolError, KindResultTooLarge, KindCancelled, KindAborted}
	for _, k := range calls {
		if !k.EndsCalls() || k.AnswersRequests() {
			t.Errorf("%q: EndsCalls %v, AnswersRequests %v; want true, false", k, k.EndsCalls(), k.AnswersRequests())
		}
	}
	for _, k := range []Kind{KindBadRequest, KindUnknownFunction, KindUnknownCall, KindLost, KindBusy, KindShuttingDown,
		KindNotActive, KindInternal, KindUnreachable, KindCertificate, "no_such_kind", "Cancelled", ""} {
		if k.EndsCalls() {
			t.Errorf("%q.EndsCalls() = true, want false", k)
		}
	}
}
