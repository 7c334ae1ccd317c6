#!/usr/bin/env bash
# Runs all of spoe-forge's tests, including the end-to-end tests against real
# HAProxy 2.6, 3.0, 3.2 and 3.4:
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -run TestFoo -v # extra arguments go to "go test"
#
# It first runs scripts/install-haproxy.sh (quick when everything is cached;
# skip it with SPOE_SKIP_INSTALL=1), sources the env file that script writes
# ($SPOE_HAPROXY_CACHE/env.sh, default /var/cache/spoe-forge/haproxy/env.sh,
# which sets SPOE_HAPROXY_2_6/_3_0/_3_2/_3_4), then runs
# "go test -race -count=1 -timeout 15m ./..." and exits with its status.
# Tests that need a missing HAProxy are skipped, or fail if
# SPOE_REQUIRE_HAPROXY=1 (as CI sets).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${SPOE_HAPROXY_CACHE:-/var/cache/spoe-forge/haproxy}"

if [[ "${SPOE_SKIP_INSTALL:-0}" != 1 ]]; then
	# Its stdout is comments and export lines; they are shown, not evaluated.
	bash scripts/install-haproxy.sh
fi

if [[ -r "$cache/env.sh" ]]; then
	# shellcheck source=/dev/null
	. "$cache/env.sh"
	echo "test.sh: SPOE_HAPROXY_2_6=${SPOE_HAPROXY_2_6:-} SPOE_HAPROXY_3_0=${SPOE_HAPROXY_3_0:-} SPOE_HAPROXY_3_2=${SPOE_HAPROXY_3_2:-} SPOE_HAPROXY_3_4=${SPOE_HAPROXY_3_4:-}" >&2
else
	echo "test.sh: WARNING: $cache/env.sh not found: tests needing HAProxy will look in the default places, and be skipped if it is not there (run scripts/install-haproxy.sh)" >&2
fi

# Modules of their own (scripts/modules.sh: kept apart so that the library
# does not depend on what they use): tested first, so that the last lines
# are the main module's.
. scripts/modules.sh
for m in "${SPOE_MODULES[@]}"; do
	echo "test.sh: go test in $m (a module of its own)" >&2
	(cd "$m" && go test -race -count=1 -timeout 10m ./...)
done

exec go test -race -count=1 -timeout 15m ./... "$@"
