// Package e2e holds spoe-forge's end-to-end tests: each runs the agent
// in-process (agent.New, Serve on a 127.0.0.1 listener) behind a real
// HAProxy 2.6, 3.0, 3.2 and 3.4 started by internal/haproxytest with a
// generated configuration, sends HTTP requests through HAProxy and checks
// what the handlers saw and what HAProxy did with their ACKs.
//
// The package has no non-test code. Run it with the HAProxy binaries
// installed by scripts/install-haproxy.sh:
//
//	. /var/cache/spoe-forge/haproxy/env.sh
//	SPOE_REQUIRE_HAPROXY=1 go test -race -count=1 ./e2e/ -v
//
// Without SPOE_REQUIRE_HAPROXY=1 a missing version is skipped loudly.
package e2e
