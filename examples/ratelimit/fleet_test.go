package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/spoe-forge/spoe-forge/examples/internal/exampletest"
	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/internal/redistest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// fleetConfig is this example's haproxy-3.2.cfg / haproxy-2.6.cfg with
// three agents in the backend instead of one.
var fleetConfig = template.Must(template.New("fleet").Parse(`
global
    log stderr format raw local0 info
    stats socket {{.Dir}}/admin.sock mode 600 level admin
    hard-stop-after 10s

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe_web
    bind {{.FE}}
    filter spoe engine ratelimit config {{.SPOE}}
    http-request deny deny_status 429 hdr Retry-After "%[var(txn.ratelimit.retry_after)]" if { var(txn.ratelimit.limited) -m bool }
    http-after-response set-header X-RateLimit-Remaining "%[var(txn.ratelimit.remaining)]" if { var(txn.ratelimit.remaining) -m found }
    http-after-response set-header X-Spoe-Error "%[var(txn.ratelimit.spoe_error)]" if { var(txn.ratelimit.spoe_error) -m found }
    http-after-response set-header X-Agent-Error "%[var(txn.ratelimit.agent_error)]" if { var(txn.ratelimit.agent_error) -m found }
    http-request return status 200 content-type text/plain string "ok"

backend be_spoe_agents
    mode {{if .Legacy}}tcp{{else}}spop{{end}}
    balance roundrobin
    timeout connect 1s
    timeout server 3m
    retries 2
    option redispatch 1
    option spop-check
    default-server check inter 200ms fall 2 rise 2
{{- range $i, $a := .Agents}}
    server agent{{$i}} {{$a}}
{{- end}}
`))

// fleetStack is three ratelimit agents behind one HAProxy.
type fleetStack struct {
	Dir, FE, SPOE string
	Legacy        bool
	Agents        []string
	client        *http.Client
}

// startFleet runs three agents (this example, built once) with args and
// HAProxy v in front of them, and waits until all are UP.
func startFleet(t *testing.T, v haproxytest.Version, bin string, args ...string) *fleetStack {
	t.Helper()
	dir, err := os.MkdirTemp("", "rl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	spoe, err := filepath.Abs(exampletest.SPOEConf)
	require.NoError(t, err)
	f := &fleetStack{Dir: dir, FE: fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)), SPOE: spoe, Legacy: v.Legacy()}
	self := fleettest.Build(t, ".", ".")
	for i := range 3 {
		addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
		p := fleettest.Start(t, fmt.Sprintf("agent%d", i), self, nil,
			append([]string{"-addr", addr, "-lame-duck", "0", "-shutdown-timeout", "2s"}, args...)...)
		fleettest.WaitListening(t, p, addr, 10*time.Second)
		f.Agents = append(f.Agents, addr)
	}
	var cfg bytes.Buffer
	require.NoError(t, fleetConfig.Execute(&cfg, f))
	haproxytest.Start(t, bin, cfg.String(), f.FE)
	for i := range f.Agents {
		fleettest.WaitServer(t, filepath.Join(dir, "admin.sock"), "be_spoe_agents", fmt.Sprintf("agent%d", i), "UP", 10*time.Second)
	}
	f.client = &http.Client{Timeout: 5 * time.Second}
	return f
}

// verdict is what one request got.
type verdict struct {
	status   int
	spoeErr  string // X-Spoe-Error: HAProxy's set-on-error
	agentErr string // X-Agent-Error: the agent's WithErrorVar
	took     time.Duration
}

func (f *fleetStack) get(t *testing.T) verdict {
	t.Helper()
	start := time.Now()
	r, err := f.client.Get("http://" + f.FE + "/")
	require.NoError(t, err)
	_ = r.Body.Close()
	return verdict{r.StatusCode, r.Header.Get("X-Spoe-Error"), r.Header.Get("X-Agent-Error"), time.Since(start)}
}

// count sends n requests, one after the other, from one client (this
// process: 127.0.0.1), and counts the answers by status, and those
// carrying X-Agent-Error (the handler failed: 1001, or 1003 when the
// store's own timeout lost the race with the agent's deadline). It fails
// the test on an X-Spoe-Error: HAProxy always got an answer in time. It returns the slowest request too.
func (f *fleetStack) count(t *testing.T, n int) (ok, limited, errs int, slowest time.Duration) {
	t.Helper()
	for range n {
		v := f.get(t)
		switch v.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("status %d", v.status)
		}
		require.Empty(t, v.spoeErr, "HAProxy's set-on-error: the agent did not answer in time")
		if v.agentErr != "" {
			require.Contains(t, []string{fmt.Sprint(agent.ErrCodeHandler), fmt.Sprint(agent.ErrCodeTimeout)}, v.agentErr, "the agent's error variable")
			errs++
		}
		slowest = max(slowest, v.took)
	}
	return ok, limited, errs, slowest
}

// TestFleetGlobalLimit: three agents, one client, 90 requests, a burst of
// 20 with no refill during the test (one request per 1000 s). With the
// in-process store each agent counts alone, and the client gets up to 3 ×
// 20; with one Redis shared by the agents it gets exactly 20. Then Redis
// is killed: the agents' fail-closed policy limits every request, with
// the agent's error variable set (X-Agent-Error: 1001), and none waits past "timeout processing" (200 ms);
// Redis restarted (empty), the client gets its 20 again, and no more.
func TestFleetGlobalLimit(t *testing.T) {
	const burst, n = 20, 90
	limits := []string{"-rate", "0.001", "-burst", fmt.Sprint(burst)}
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		t.Run("in-process", func(t *testing.T) {
			f := startFleet(t, v, bin, limits...)
			ok, limited, errs, _ := f.count(t, n)
			t.Logf("HAProxy %s, in-process store, 3 agents: %d of %d allowed (limit %d per agent), %d limited", v, ok, n, burst, limited)
			require.Zero(t, errs)
			require.Greater(t, ok, burst, "each agent counts alone: more than one agent's burst")
			require.LessOrEqual(t, ok, 3*burst)
			if !v.Legacy() {
				// 3.1+ balance each request (roundrobin): 30 per agent.
				require.Equal(t, 3*burst, ok)
			}
		})
		t.Run("redis", func(t *testing.T) {
			rs := redistest.Start(t)
			f := startFleet(t, v, bin, append(limits, "-store", "redis", "-redis-addr", rs.Addr, "-on-store-error", "closed")...)
			ok, limited, errs, _ := f.count(t, n)
			t.Logf("HAProxy %s, Redis store, 3 agents: %d of %d allowed (limit %d for all), %d limited", v, ok, n, burst, limited)
			require.Zero(t, errs)
			require.Equal(t, burst, ok, "one limit across the agents")

			require.NoError(t, rs.Kill())
			ok, limited, errs, slowest := f.count(t, 30)
			t.Logf("HAProxy %s, Redis killed: %d allowed, %d limited, %d with X-Agent-Error, slowest %v", v, ok, limited, errs, slowest)
			require.Zero(t, ok, "fail closed")
			require.Equal(t, 30, errs, "every answer says the store failed")
			require.Less(t, slowest, 200*time.Millisecond, "a request waited past timeout processing")

			require.NoError(t, rs.Restart())
			require.Eventually(t, func() bool { v := f.get(t); return v.agentErr == "" && v.spoeErr == "" }, 10*time.Second, 50*time.Millisecond, "no recovery once Redis is back")
			ok, _, errs, _ = f.count(t, 40)
			t.Logf("HAProxy %s, Redis back: %d of 40 allowed", v, ok+1)
			require.Zero(t, errs)
			require.Equal(t, burst-1, ok, "the limit applies again (one request spent by the recovery probe)")
		})
	})
}
