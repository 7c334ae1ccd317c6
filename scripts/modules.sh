# shellcheck shell=bash
# Sourced by scripts/test.sh and .ci/run: the Go modules of this repository
# besides the root one (the library). Each has a go.mod of its own so that
# what it uses (a JWT library, golang.org/x/time, Redis' and OpenTelemetry's
# clients, a plotting library, other SPOE libraries) never becomes a
# dependency of a program that imports spoe-forge. Both scripts vet,
# staticcheck and test every one, and CI checks that each is tidy and that
# no go.mod in the tree is missing from this list.
#
#   examples            jwt, blocklist, enrich and internal/exampletest
#   examples/otel       OpenTelemetry tracing middleware
#   examples/ratelimit  token buckets, in process or in Redis
#   bench               bench/report (charts)
#   bench/peers         the benchmark's agents (other libraries, the floor); no tests
SPOE_MODULES=(examples examples/otel examples/ratelimit bench bench/peers)
