package dockertest

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// startHAProxyEnv runs HAProxy (bin) with docker/'s configuration cfg, the
// echo backend as the application and env on top of the usual variables,
// and returns its base URL.
func startHAProxyEnv(t *testing.T, bin, cfg, spoe string, backend *echoBackend, env map[string]string) (string, *haproxytest.Proc) {
	t.Helper()
	fe := "127.0.0.1:" + strconv.Itoa(haproxytest.FreePort(t))
	all := map[string]string{
		"FRONTEND_BIND":     fe,
		"BACKEND_ADDR":      backend.addr(),
		"AGENT_CHECK_INTER": checkInter.String(),
		"SPOE_CONF":         dockerDir(t, spoe),
	}
	for k, v := range env {
		all[k] = v
	}
	setConfigEnv(t, all)
	p := haproxytest.Start(t, bin, readFile(t, dockerDir(t, cfg)), fe)
	return "http://" + fe, p
}

// requireServedFor checks, for 15 check intervals, that the agent's
// variables come back and that HAProxy's spop-check keeps passing.
func requireServedFor(t *testing.T, base string, p *haproxytest.Proc) {
	t.Helper()
	r := get(t, base, "/hello")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "/hello", r.header.Get("X-Test-Arg"), "HAProxy output:\n%s", p.Output())
	require.Empty(t, r.header.Get("X-Spoe-Error"))
	require.Empty(t, r.header.Get("X-Agent-Error"))
	for end := time.Now().Add(15 * checkInter); time.Now().Before(end); time.Sleep(checkInter / 2) {
		r := get(t, base, "/healthz")
		require.Equal(t, http.StatusOK, r.status, "HAProxy output:\n%s", p.Output())
	}
	require.NotContains(t, p.Output(), "be_spoe_agents/agent1 is DOWN")
}

// TestTopologyMutualTLS runs compose's mutual TLS natively: the
// certificates of docker/gen-dev-certs.sh, the agent with SPOE_TLS_*'s
// flags, HAProxy with AGENT_CA, AGENT_CLIENT_CERT and AGENT_SERVER_NAME as
// compose sets them; then HAProxy without them is refused.
func TestTopologyMutualTLS(t *testing.T) {
	example, spoeForge := binaries(t)
	certs := devCerts(t)
	file := func(name string) string { return filepath.Join(certs, name) }
	port := haproxytest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startAgentWith(t, example, spoeForge,
		[]string{"-addr", addr, "-tls-cert", file("agent.crt"), "-tls-key", file("agent.key"), "-tls-client-ca", file("ca.crt")},
		[]string{"--port", strconv.Itoa(port), "--ca", file("ca.crt"), "--cert", file("check.pem")})
	backend := newEchoBackend(t)

	t.Run("spoe-forge healthcheck", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			out  string
		}{
			{"mutual TLS", []string{"--ca", file("ca.crt"), "--cert", file("check.pem")}, 0, "answered version 2.0, max-frame-size 16380, capabilities \"fragmentation\", over TLS 1.3"},
			{"mutual TLS, by the name in the certificate", []string{"--ca", file("ca.crt"), "--cert", file("haproxy.pem"), "--server-name", "agent"}, 0, "over TLS 1.3"},
			{"plain text", nil, 1, "unhealthy: " + addr + ": "},
			{"no client certificate", []string{"--ca", file("ca.crt")}, 1, "the agent refused the TLS connection: remote error: tls: certificate required"},
			{"another name", []string{"--ca", file("ca.crt"), "--cert", file("check.pem"), "--server-name", "elsewhere"}, 1, "not trusted"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, out := healthcheck(t, spoeForge, port, tc.args...)
				require.Equal(t, tc.code, code, out)
				require.Contains(t, out, tc.out)
				t.Logf("%s", out)
			})
		}
	})

	for _, tc := range topologies {
		t.Run(string(tc.version)+"/"+tc.cfg, func(t *testing.T) {
			bin := haproxytest.Binary(t, tc.version)
			t.Run("mutual TLS: variables come back, spop-check passes over TLS", func(t *testing.T) {
				base, p := startHAProxyEnv(t, bin, tc.cfg, tc.spoe, backend, map[string]string{
					"AGENT_ADDR":        addr,
					"AGENT_CA":          file("ca.crt"),
					"AGENT_CLIENT_CERT": file("haproxy.pem"),
					"AGENT_SERVER_NAME": "agent",
				})
				requireServedFor(t, base, p)
			})
			t.Run("plain text to the TLS agent is refused, /admin fails closed", func(t *testing.T) {
				base, p := startHAProxyEnv(t, bin, tc.cfg, tc.spoe, backend, map[string]string{"AGENT_ADDR": addr})
				r := get(t, base, "/admin")
				require.Equal(t, http.StatusForbidden, r.status)
				require.Empty(t, r.header.Get("X-Test-Arg"))
				deadline := time.Now().Add(readyTimeout)
				for get(t, base, "/healthz").status != http.StatusServiceUnavailable {
					require.True(t, time.Now().Before(deadline), "HAProxy did not mark the agent DOWN; output:\n%s", p.Output())
					time.Sleep(checkInter / 2)
				}
			})
		})
	}
}

// TestTopologyUnixSocket runs the topology with the agent on a unix socket
// (-addr unix:..., -socket-mode) and HAProxy's AGENT_SOCKET=unix@...
func TestTopologyUnixSocket(t *testing.T) {
	example, spoeForge := binaries(t)
	dir, err := os.MkdirTemp("", "dt") // unix socket paths are limited to 108 bytes
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	startAgentWith(t, example, spoeForge,
		[]string{"-addr", "unix:" + sock, "-socket-mode", "0660"}, []string{"--unix", sock})
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
	backend := newEchoBackend(t)
	for _, tc := range topologies {
		t.Run(string(tc.version)+"/"+tc.cfg, func(t *testing.T) {
			bin := haproxytest.Binary(t, tc.version)
			base, p := startHAProxyEnv(t, bin, tc.cfg, tc.spoe, backend, map[string]string{"AGENT_SOCKET": "unix@" + sock})
			requireServedFor(t, base, p)
		})
	}
}
