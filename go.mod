module github.com/noderpc/noderpc

go 1.26.0

require (
	github.com/VictoriaMetrics/metrics v1.35.1
	github.com/goccy/go-json v0.10.5
	github.com/google/renameio/v2 v2.0.2
	github.com/google/uuid v1.6.0
	github.com/oklog/run v1.2.0
	github.com/pelletier/go-toml/v2 v2.4.3
	github.com/valyala/fasthttp v1.74.0
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sys v0.47.0
)

require (
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/molecule-man/go-brrr v1.0.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	github.com/valyala/fastrand v1.1.0 // indirect
	github.com/valyala/histogram v1.2.0 // indirect
)
