module github.com/noderpc/noderpc

go 1.26.0

require github.com/goccy/go-json v0.10.5
