package service

import "testing"

// firstHead finds a head's end wherever the reads cut it, and calls it
// bad only when it is not CRLF CRLF.
func TestFirstHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		head      string
		done, bad bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true, false},
		{"GET / HTTP/1.1\nHost: x\r\n\r\n", true, false},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\nbody\n\n", true, false},
		{"GET / HTTP/1.1\nHost: x\n\n", true, true},
		{"GET / HTTP/1.1\r\nHost: x\r\n\n", true, true},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", true, true},
		{"GET / HTTP/1.1\n\n", true, true},
		{"\n\nGET / HTTP/1.1\nHost: x\n\n", true, true},
		{"GET / HTTP/1.1\r\nHost: x\r\n", false, false},
		{"GET / HTTP/1.1\nHost: x\n", false, false},
	} {
		var whole, bytewise firstHead
		bad := whole.scan([]byte(tc.head))
		badBytewise := false
		for i := range len(tc.head) {
			if bytewise.scan([]byte{tc.head[i]}) {
				badBytewise = true
			}
			if bytewise.done {
				break
			}
		}
		if bad != tc.bad || whole.done != tc.done || badBytewise != tc.bad || bytewise.done != tc.done {
			t.Errorf("%q: bad %v, done %v (read a byte at a time: %v, %v); want %v, %v", tc.head, bad, whole.done, badBytewise, bytewise.done, tc.bad, tc.done)
		}
	}
}
