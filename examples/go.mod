module github.com/spoe-forge/spoe-forge/examples

go 1.24.0

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/spoe-forge/spoe-forge v0.0.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/zap v1.28.0
)

require (
	github.com/panjf2000/ants/v2 v2.12.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sync v0.13.0 // indirect
)

replace github.com/spoe-forge/spoe-forge => ../
