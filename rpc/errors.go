package rpc

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error *Error `json:"error"`
}
