// Package dockertest tests the docker/ folder without a Docker engine. It
// holds tests only:
//
//   - every HAProxy configuration under docker/ is loaded with "haproxy -c" by
//     the real HAProxy binaries it is written for (haproxy-3.2.cfg by 3.2 and
//     3.4, haproxy-2.6.cfg by 2.6, 3.0, 3.2 and 3.4), with its default
//     environment, with TRUSTED_PROXIES and with the environment
//     compose.yaml gives it;
//   - the compose topology runs natively: the same configuration files, the
//     agent built from cmd/example and run as a process, a Go HTTP server
//     standing in for whoami, and HAProxy 3.2, 3.4, 2.6 and 3.0 pointed at
//     them by environment variables. The tests check the agent's headers, the 403 on
//     /admin for a non-loopback client, HAProxy's own spop-check, and the
//     exit statuses of "spoe-forge healthcheck";
//   - docker/compose.yaml and docker/Dockerfile are parsed and their structure
//     checked against each other and against the HAProxy configurations.
//
// HAProxy binaries are found by internal/haproxytest: without them the
// HAProxy tests skip, or fail when SPOE_REQUIRE_HAPROXY=1. Everything listens
// on 127.0.0.1, and every wait is bounded.
package dockertest
