#!/usr/bin/env bash
# Scale checks that are too slow or need too many file descriptors for the
# default test run:
#
#   bash scripts/scale.sh            # 10,000 idle connections after HELLO
#   SPOE_SCALE_CONNS=2000 bash scripts/scale.sh
#
# It raises the soft file descriptor limit as far as the hard limit allows
# (the agent and the client run in separate processes, each needs one
# descriptor per connection) and prints the agent's memory per idle
# connection, in plain text and over mutual TLS (TestIdleConnectionsTLS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n "$(ulimit -Hn)" || true
echo "scale.sh: file descriptor limit $(ulimit -n), $(nproc) cores"
exec go test -tags scale -count=1 -timeout 10m -run '^TestIdleConnections(TLS)?$' -v ./pkg/agent/ "$@"
