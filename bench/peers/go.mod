module github.com/spoe-forge/spoe-forge/bench/peers

go 1.24.0

require (
	github.com/criteo/haproxy-spoe-go v1.0.8
	github.com/dropmorepackets/haproxy-go v0.1.1
	github.com/negasus/haproxy-spoe-go v1.0.7
	github.com/sirupsen/logrus v1.7.0
	github.com/spoe-forge/spoe-forge v0.0.0
)

require (
	github.com/libp2p/go-buffer-pool v0.0.2 // indirect
	github.com/panjf2000/ants/v2 v2.12.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/net v0.0.0-20201224014010-6772e930b67b // indirect
	golang.org/x/sync v0.13.0 // indirect
	golang.org/x/sys v0.35.0 // indirect
)

replace github.com/spoe-forge/spoe-forge => ../..
