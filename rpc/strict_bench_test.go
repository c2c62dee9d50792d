package rpc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/goccy/go-json"
)

// bigStart is a StartRequest whose fn_args is an array of small records
// of about size bytes: strings with escapes and non-ASCII, numbers,
// literals, nested objects, the mix a caller sends.
func bigStart(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"fn_name":"ingest","timeout":5,"request_id":"r-1","fn_args":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"node-%d","tags":["a","b\n"],"ratio":%d.125e-3,"ok":true,"note":"caf\u00e9 é 😀","meta":{"x":null,"y":[1,2,3]}}`, i, i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkDecodeStart compares a strict Decode of a start with 1 MiB of
// fn_args to go-json's plain Unmarshal of it, and to the scan alone.
func BenchmarkDecodeStart(b *testing.B) {
	for _, size := range []int{100, 1 << 20} {
		body := bigStart(size)
		if err := Decode(body, new(StartRequest)); err != nil {
			b.Fatal(err)
		}
		bench := func(name string, decode func() error) {
			b.Run(fmt.Sprintf("%s/%dB", name, len(body)), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if err := decode(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		bench("strict", func() error {
			var req StartRequest
			return Decode(body, &req)
		})
		bench("go-json", func() error {
			var req StartRequest
			return json.Unmarshal(body, &req)
		})
		bench("scan", func() error { return CheckJSON(body) })
	}
}
