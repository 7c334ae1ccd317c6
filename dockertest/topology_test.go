package dockertest

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// topologies are the HAProxy versions the compose topology is run with,
// natively, and the docker/ files each one uses.
var topologies = []struct {
	version   haproxytest.Version
	cfg, spoe string
}{
	{haproxytest.V32, "haproxy-3.2.cfg", "spoe-3.2.conf"},
	{haproxytest.V34, "haproxy-3.2.cfg", "spoe-3.2.conf"},
	{haproxytest.V26, "haproxy-2.6.cfg", "spoe-2.6.conf"},
	{haproxytest.V30, "haproxy-2.6.cfg", "spoe-2.6.conf"},
}

// checkInter is AGENT_CHECK_INTER in these tests: HAProxy's spop-check runs
// often enough to mark a bad agent DOWN (3 failures) well within a second.
const checkInter = 100 * time.Millisecond

// response is what the tests look at in an HTTP answer.
type response struct {
	status int
	header http.Header
	body   string
}

// get sends GET path to base with the given request headers.
func get(t *testing.T, base, path string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{Timeout: httpTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err, "GET %s", path)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, resp.Header, string(body)}
}

// TestTopology runs docker/compose.yaml's topology without Docker: the agent
// built from cmd/example, a Go HTTP server in place of whoami, and HAProxy
// 3.2, 3.4, 2.6 and 3.0 with docker/'s configuration files, pointed at them by
// environment variables.
func TestTopology(t *testing.T) {
	example, spoeForge := binaries(t)
	agentPort := haproxytest.FreePort(t)
	startAgent(t, example, spoeForge, agentPort)
	agentAddr := "127.0.0.1:" + strconv.Itoa(agentPort)
	backend := newEchoBackend(t)

	t.Run("spoe-forge healthcheck", func(t *testing.T) {
		code, out := healthcheck(t, spoeForge, agentPort)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "healthy: "+agentAddr+" answered version 2.0, max-frame-size 16380")

		code, out = healthcheck(t, spoeForge, haproxytest.FreePort(t))
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "connection refused")

		// Go's HTTP server waits for the end of a request line that the
		// HELLO never sends: the check times out.
		code, out = healthcheck(t, spoeForge, backend.port(), "--timeout", "300ms")
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "no AGENT-HELLO: no answer within 300ms")

		code, out = healthcheck(t, spoeForge, backend.port(), "--timeout", "300ms", "--quiet")
		require.Equal(t, 1, code)
		require.Empty(t, out)
	})

	for _, tc := range topologies {
		t.Run(string(tc.version)+"/"+tc.cfg, func(t *testing.T) {
			bin := haproxytest.Binary(t, tc.version)
			cfg := readFile(t, dockerDir(t, tc.cfg))
			// start runs HAProxy with cfg, the agent at agentAddr, and
			// X-Forwarded-For trusted from trusted ("" for never), and
			// returns its base URL.
			start := func(t *testing.T, agentAddr, trusted string) (string, *haproxytest.Proc) {
				t.Helper()
				fe := "127.0.0.1:" + strconv.Itoa(haproxytest.FreePort(t))
				env := map[string]string{
					"FRONTEND_BIND":     fe,
					"BACKEND_ADDR":      backend.addr(),
					"AGENT_ADDR":        agentAddr,
					"AGENT_CHECK_INTER": checkInter.String(),
					// haproxytest.Start writes cfg elsewhere: name the
					// SPOE file by its absolute path.
					"SPOE_CONF": dockerDir(t, tc.spoe),
				}
				if trusted != "" {
					env["TRUSTED_PROXIES"] = trusted
				}
				setConfigEnv(t, env)
				p := haproxytest.Start(t, bin, cfg, fe)
				return "http://" + fe, p
			}

			t.Run("agent variables as headers, /admin denied to a non-loopback client", func(t *testing.T) {
				base, _ := start(t, agentAddr, "127.0.0.0/8")
				cases := []struct {
					name    string
					path    string
					headers []string
					status  int
					allowed string // X-Access-Allowed
					score   string // X-Score: len(path), +100 when denied
				}{
					{"loopback client", "/hello", nil, http.StatusOK, "true", "6"},
					{"loopback client on /admin", "/admin", nil, http.StatusOK, "true", "6"},
					{"remote client", "/hello", []string{"X-Forwarded-For", "203.0.113.7"}, http.StatusOK, "true", "6"},
					{"remote client on /admin", "/admin", []string{"X-Forwarded-For", "203.0.113.7"}, http.StatusForbidden, "false", "106"},
					{"remote IPv6 client on /admin/users", "/admin/users", []string{"X-Forwarded-For", "2001:db8::1"}, http.StatusForbidden, "false", "112"},
					{"remote client forging the agent's headers", "/admin", []string{"X-Forwarded-For", "198.51.100.9", "X-Access-Allowed", "true", "X-Test-Arg", "forged"}, http.StatusForbidden, "false", "106"},
					{"forged headers on an allowed path", "/hello", []string{"X-Test-Arg", "forged", "X-Score", "-1"}, http.StatusOK, "true", "6"},
				}
				for _, c := range cases {
					t.Run(c.name, func(t *testing.T) {
						before := backend.hitsOf(c.path)
						r := get(t, base, c.path, c.headers...)
						require.Equal(t, c.status, r.status, "body: %s", r.body)
						// On every response, 403 included.
						require.Equal(t, c.path, r.header.Get("X-Test-Arg"))
						require.Equal(t, c.score, r.header.Get("X-Score"))
						require.Equal(t, c.allowed, r.header.Get("X-Access-Allowed"))
						require.Empty(t, r.header.Get("X-Spoe-Error"))
						require.Empty(t, r.header.Get("X-Agent-Error"))
						if c.status == http.StatusForbidden {
							require.Equal(t, before, backend.hitsOf(c.path), "a denied request must not reach the application")
							return
						}
						require.Equal(t, before+1, backend.hitsOf(c.path))
						// What whoami would print: the request headers.
						require.Contains(t, r.body, "Hostname: echo-backend")
						require.Contains(t, r.body, "\nX-Test-Arg: "+c.path+"\n")
						require.Contains(t, r.body, "\nX-Score: "+c.score+"\n")
						require.Contains(t, r.body, "\nX-Access-Allowed: "+c.allowed+"\n")
						require.NotContains(t, r.body, "forged")
						require.NotContains(t, r.body, "X-Spoe-Error")
					})
				}
			})

			t.Run("X-Forwarded-For is ignored without TRUSTED_PROXIES", func(t *testing.T) {
				base, _ := start(t, agentAddr, "")
				r := get(t, base, "/admin", "X-Forwarded-For", "203.0.113.7")
				require.Equal(t, http.StatusOK, r.status, "the client is 127.0.0.1, a loopback address: %s", r.body)
				require.Equal(t, "true", r.header.Get("X-Access-Allowed"))
				require.Contains(t, r.body, "\nX-Forwarded-For: 203.0.113.7\n")
			})

			t.Run("HAProxy's spop-check passes against the agent", func(t *testing.T) {
				base, p := start(t, agentAddr, "")
				// 15 check intervals: three failed checks would have
				// marked the agent DOWN (see the next test) and /healthz
				// would answer 503.
				for end := time.Now().Add(15 * checkInter); time.Now().Before(end); time.Sleep(checkInter / 2) {
					r := get(t, base, "/healthz")
					require.Equal(t, http.StatusOK, r.status, "HAProxy output:\n%s", p.Output())
				}
				require.NotContains(t, p.Output(), "be_spoe_agents/agent1 is DOWN")
			})

			t.Run("a server that does not speak SPOP fails the check, /admin fails closed", func(t *testing.T) {
				base, p := start(t, backend.addr(), "")
				// A request before HAProxy's check marks the "agent"
				// DOWN or after: either way, no variables.
				r := get(t, base, "/admin")
				require.Equal(t, http.StatusForbidden, r.status, "no verdict from the agent: /admin must be denied")
				require.Empty(t, r.header.Get("X-Test-Arg"))
				require.NotEmpty(t, r.header.Get("X-Spoe-Error"), "set-on-error must say why")
				deadline := time.Now().Add(readyTimeout)
				for {
					r := get(t, base, "/healthz")
					if r.status == http.StatusServiceUnavailable {
						break
					}
					require.Equal(t, http.StatusOK, r.status)
					require.True(t, time.Now().Before(deadline), "HAProxy did not mark a non-SPOP agent DOWN within %v; output:\n%s", readyTimeout, p.Output())
					time.Sleep(checkInter / 2)
				}
				require.Contains(t, p.Output(), "be_spoe_agents/agent1 is DOWN")
				// Other paths still work, without the agent's headers.
				r = get(t, base, "/hello")
				require.Equal(t, http.StatusOK, r.status)
				require.Empty(t, r.header.Get("X-Test-Arg"))
				require.NotContains(t, r.body, "X-Test-Arg")
				require.True(t, strings.Contains(r.body, "\nX-Spoe-Error: "), "the application sees the SPOE error: %s", r.body)
			})
		})
	}
}
