package rpc

import (
	"errors"
	"testing"
)

func TestDecodeFunctionResult(t *testing.T) {
	tests := []struct {
		out        string
		wantResult string
		wantKind   Kind // kind of the returned error; "" for success
		wantFnKind Kind // kind of the frame's error
	}{
		{out: `{"result":{"a":"\"x\""}}` + "\n", wantResult: `{"a":"\"x\""}`},
		{out: `{"result":"\u00e9\\"}`, wantResult: `"\u00e9\\"`},
		{out: `{"result":null}`, wantResult: `null`},
		{out: `{"error":{"kind":"function_failed","message":"say \"no\""}}`, wantFnKind: KindFunctionFailed},
		{out: `{"error":{"message":"no kind"}}`, wantFnKind: KindFunctionFailed},
		{out: ``, wantKind: KindProtocolError},
		{out: `garbage`, wantKind: KindProtocolError},
		{out: `{"result":1}{"result":2}`, wantKind: KindProtocolError},
		{out: `{"result":1} trailing`, wantKind: KindProtocolError},
		{out: `{}`, wantKind: KindProtocolError},
		{out: `{"result":1,"error":{"kind":"x"}}`, wantKind: KindProtocolError},
		{out: `{"result":1,"extra":2}`, wantKind: KindProtocolError},
	}
	for _, tt := range tests {
		got, err := DecodeFunctionResult([]byte(tt.out))
		if tt.wantKind != "" {
			if !errors.Is(err, &Error{Kind: tt.wantKind}) {
				t.Errorf("DecodeFunctionResult(%q) error = %v, want kind %s", tt.out, err, tt.wantKind)
			}
			continue
		}
		if err != nil {
			t.Errorf("DecodeFunctionResult(%q) error = %v, want none", tt.out, err)
			continue
		}
		if tt.wantFnKind != "" {
			if got.Error == nil || got.Error.Kind != tt.wantFnKind {
				t.Errorf("DecodeFunctionResult(%q) frame error = %v, want kind %s", tt.out, got.Error, tt.wantFnKind)
			}
			continue
		}
		// null decodes into a RawMessage as the bytes "null".
		if string(got.Result) != tt.wantResult {
			t.Errorf("DecodeFunctionResult(%q) result = %s, want %s", tt.out, got.Result, tt.wantResult)
		}
	}
}

func TestAppendFunctionRequest(t *testing.T) {
	tests := []struct {
		args string
		want FunctionRequest
	}{
		{`{"a":[1,"x\"y"]}`, FunctionRequest{CallID: "1:2:3.000004:0123456789abcdef", FnName: "echo", FnArgs: []byte(`{"a":[1,"x\"y"]}`)}},
		{``, FunctionRequest{CallID: "1:2:3.000004:0123456789abcdef", FnName: "echo"}},
	}
	for _, tt := range tests {
		got, err := AppendFunctionRequest(nil, "1:2:3.000004:0123456789abcdef", "echo", []byte(tt.args))
		if err != nil || got[len(got)-1] != '\n' {
			t.Fatalf("AppendFunctionRequest(%s) = %q, %v; want one line", tt.args, got, err)
		}
		var back FunctionRequest
		if err := Decode(got, &back); err != nil {
			t.Fatalf("AppendFunctionRequest(%s) wrote %q, which does not decode: %v", tt.args, got, err)
		}
		if back.CallID != tt.want.CallID || back.FnName != tt.want.FnName || string(back.FnArgs) != string(tt.want.FnArgs) {
			t.Errorf("AppendFunctionRequest(%s) decodes to %+v, want %+v", tt.args, back, tt.want)
		}
	}
}
