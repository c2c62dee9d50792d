package service

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestFramingError: FramingError refuses the heads fasthttp parses but
// frames a body of in a way another reader may not (a transfer coding
// other than chunked, or one beside a Content-Length) and passes the
// rest, whatever the case of the names.
func TestFramingError(t *testing.T) {
	for _, tc := range []struct {
		headers string
		refused bool
	}{
		{"", false},
		{"Content-Length: 5\r\n", false},
		{"Transfer-Encoding: chunked\r\n", false},
		{"transfer-encoding: CHUNKED\r\n", false},
		{"X-Transfer-Encoding: identity\r\nContent-Length: 5\r\n", false},
		{"Transfer-Encoding: identity\r\n", true},
		{"TRANSFER-ENCODING: Identity\r\nContent-Length: 5\r\n", true},
		{"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", true},
		{"Transfer-Encoding: chunked\r\ncontent-length: 0\r\n", true},
	} {
		head := "PUT /StartFunction HTTP/1.1\r\nHost: x\r\n" + tc.headers + "\r\n"
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
			t.Fatalf("parsing %q: %v", head, err)
		}
		if got := FramingError(&h); (got != nil) != tc.refused {
			t.Errorf("FramingError of a head with %q = %v, want refused %v", tc.headers, got, tc.refused)
		}
	}
}
