package rpc

import "bytes"

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error *Error `json:"error"`
}

// DecodeErrorAnswer reads the body of a non-2xx answer: the *Error of the
// ErrorResponse a noderpc daemon sends or, from anything else on the way
// (a proxy, an answer cut short), an *Error of the kind status means that
// quotes the first 200 bytes of body.
func DecodeErrorAnswer(status int, body []byte) *Error {
	var er ErrorResponse
	if err := UnmarshalStrict(body, &er, IgnoreUnknownFields); err == nil && er.Error != nil && er.Error.Kind != "" {
		return er.Error
	}
	return Errorf(KindFromStatus(status), "HTTP %d: %s", status, ClipBytes(bytes.TrimSpace(body), 200))
}
