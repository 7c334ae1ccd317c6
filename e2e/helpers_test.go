package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Bounds shared by every test.
const (
	// pollTimeout bounds every "wait until" loop.
	pollTimeout = 10 * time.Second
	// pollEvery is the period of those loops.
	pollEvery = 20 * time.Millisecond
	// requestTimeout bounds one HTTP request through HAProxy.
	requestTimeout = 15 * time.Second
	// agentStopTimeout bounds the agent's Shutdown in cleanups.
	agentStopTimeout = 10 * time.Second
)

// testAgent is an agent served on a 127.0.0.1 listener for one test.
type testAgent struct {
	*agent.Agent
	// Addr is the listener's "127.0.0.1:port".
	Addr string
	// Logs records everything the agent logged.
	Logs *observer.ObservedLogs

	served   chan struct{} // closed when Serve has returned
	serveErr error         // Serve's result; read after served is closed
	stopOnce sync.Once
	stopErr  error
}

// startAgent builds an agent with opts (plus a logger that records
// everything), lets register add its handlers and serves it on a new
// 127.0.0.1 listener. The agent is shut down when the test ends, and its log
// is printed if the test failed.
func startAgent(t *testing.T, register func(a *agent.Agent), opts ...agent.Option) *testAgent {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return startAgentOn(t, l, register, opts...)
}

// startAgentOn is startAgent on a listener of the test's: Addr is then the
// address in HAProxy's syntax ("unix@/path" for a unix socket).
func startAgentOn(t *testing.T, l net.Listener, register func(a *agent.Agent), opts ...agent.Option) *testAgent {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	// A handler deadline of 1 s, below the configs' timeout processing of
	// 2 s, unless the test sets its own: under -race on a loaded two-core
	// machine a NOTIFY can queue past the default 200 ms, which tests that
	// are not about deadlines must not see.
	opts = append([]agent.Option{agent.WithLogger(zap.New(core)), agent.WithTimeout(time.Second)}, opts...)
	ta := &testAgent{Agent: agent.New(opts...), Logs: logs, served: make(chan struct{})}
	if register != nil {
		register(ta.Agent)
	}
	ta.Addr = l.Addr().String()
	if l.Addr().Network() == "unix" {
		ta.Addr = "unix@" + ta.Addr
	}
	go func() {
		defer close(ta.served)
		ta.serveErr = ta.Serve(l)
	}()
	t.Cleanup(func() {
		if err := ta.stop(); err != nil {
			t.Errorf("agent Shutdown: %v", err)
		}
		select {
		case <-ta.served:
			if !errors.Is(ta.serveErr, agent.ErrAgentClosed) {
				t.Errorf("agent Serve returned %v, want ErrAgentClosed", ta.serveErr)
			}
		case <-time.After(agentStopTimeout):
			t.Errorf("agent Serve did not return within %v of Shutdown", agentStopTimeout)
		}
		if t.Failed() {
			t.Logf("agent log (%d entries):\n%s", logs.Len(), formatLogs(logs.All()))
		}
	})
	return ta
}

// stop shuts the agent down once (bounded), and returns Shutdown's error.
func (ta *testAgent) stop() error {
	ta.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		ta.stopErr = ta.Shutdown(ctx)
	})
	return ta.stopErr
}

// problems returns the agent's log entries at Warn level and above.
func (ta *testAgent) problems() []observer.LoggedEntry {
	return ta.Logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zapcore.WarnLevel }).All()
}

// requireNoProblems fails the test if the agent logged a warning or an error.
func (ta *testAgent) requireNoProblems(t *testing.T) {
	t.Helper()
	if p := ta.problems(); len(p) > 0 {
		t.Fatalf("the agent logged %d warnings/errors:\n%s", len(p), formatLogs(p))
	}
}

func formatLogs(entries []observer.LoggedEntry) string {
	const keep = 300
	var b strings.Builder
	if len(entries) > keep {
		fmt.Fprintf(&b, "... (%d earlier entries)\n", len(entries)-keep)
		entries = entries[len(entries)-keep:]
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s %s", e.Time.Format("15:04:05.000"), e.Level.CapitalString(), e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// hapConfig describes one HAProxy setup: a frontend fe_main on FEPort with
// the SPOE filter (engine "e2e", var-prefix "e2e", set-on-error "spoe_error"),
// and the agent backend be_spoa pointing at AgentAddr.
type hapConfig struct {
	V         haproxytest.Version
	FEPort    int
	AgentAddr string
	// Dir holds the SPOE file and the stats socket (admin.sock).
	Dir string
	// Check adds "option spop-check" and "check inter 300ms" to a1.
	Check bool
	// ServerOpts: more options of a1's server line ("ssl verify required
	// ca-file ... crt ...").
	ServerOpts string
	// Global: extra lines of the global section.
	Global string
	// Frontend: the rules of fe_main (filter and bind are given).
	Frontend string
	// Extra: more sections after be_spoa.
	Extra string
	// Messages: the spoe-agent's "messages" list.
	Messages string
	// AgentLines: extra lines of the spoe-agent section.
	AgentLines string
	// SPOE: the spoe-message sections.
	SPOE string
	// Processing is the SPOE "timeout processing" (default 2s).
	Processing string
}

// Stats returns the path of the stats socket.
func (c *hapConfig) Stats() string { return filepath.Join(c.Dir, "admin.sock") }

// FEAddr returns the frontend's address.
func (c *hapConfig) FEAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.FEPort) }

// URL returns the URL of path on the frontend.
func (c *hapConfig) URL(path string) string { return "http://" + c.FEAddr() + path }

var haproxyTmpl = template.Must(template.New("haproxy").Parse(`
global
    log stderr format raw local0 info
    stats socket {{.Dir}}/admin.sock mode 600 level admin
    hard-stop-after 15s
{{.Global}}
defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 2s

frontend fe_main
    bind 127.0.0.1:{{.FEPort}}
    option http-buffer-request
    filter spoe engine e2e config {{.Dir}}/spoe.conf
{{.Frontend}}

backend be_spoa
    mode {{if .V.Legacy}}tcp{{else}}spop{{end}}
    timeout connect 2s
    timeout server 60s
{{- if .Check}}
    option spop-check
    server a1 {{.AgentAddr}} check inter 300ms {{.ServerOpts}}
{{- else}}
    server a1 {{.AgentAddr}} {{.ServerOpts}}
{{- end}}
{{.Extra}}
`))

var spoeTmpl = template.Must(template.New("spoe").Parse(`
[e2e]
spoe-agent e2e-agent
    messages {{.Messages}}
    option var-prefix e2e
    option set-on-error spoe_error
{{- if .V.Legacy}}
    timeout hello 2s
    timeout idle 60s
{{- end}}
    timeout processing {{.Processing}}
    use-backend be_spoa
    log global
{{.AgentLines}}
{{.SPOE}}
`))

// render writes the SPOE file into Dir (created if empty) and returns the
// HAProxy configuration.
func (c *hapConfig) render(t *testing.T) string {
	t.Helper()
	if c.Dir == "" {
		// Unix socket paths are limited to 108 bytes: keep the folder short.
		d, err := os.MkdirTemp("", "e2e")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		c.Dir = d
	}
	if c.Processing == "" {
		c.Processing = "2s"
	}
	var spoe, cfg bytes.Buffer
	require.NoError(t, spoeTmpl.Execute(&spoe, c))
	require.NoError(t, os.WriteFile(filepath.Join(c.Dir, "spoe.conf"), spoe.Bytes(), 0o644))
	require.NoError(t, haproxyTmpl.Execute(&cfg, c))
	return cfg.String()
}

// startHAProxy renders c, starts HAProxy on it and waits for the frontend
// and, when c.Check is set, for a1 to pass its health check.
func startHAProxy(t *testing.T, bin string, c *hapConfig) *haproxytest.Proc {
	t.Helper()
	cfg := c.render(t)
	p := haproxytest.Start(t, bin, cfg, c.FEAddr())
	if c.Check {
		waitServer(t, c.Stats(), "be_spoa", "a1", "UP", "L7OK")
	}
	return p
}

// waitServer polls the stats socket until proxy/server has the given status
// and a check_status starting with check.
func waitServer(t *testing.T, sock, proxy, server, status, check string) map[string]string {
	t.Helper()
	var last map[string]string
	var lastErr error
	deadline := time.Now().Add(pollTimeout)
	for time.Now().Before(deadline) {
		st, err := fleettest.ShowStat(sock)
		lastErr = err
		if err == nil {
			last = st[proxy+"/"+server]
			if last != nil && last["status"] == status && strings.HasPrefix(last["check_status"], check) {
				return last
			}
		}
		time.Sleep(pollEvery)
	}
	t.Fatalf("%s/%s did not become %s (check %s) within %v: last row %v, last error %v",
		proxy, server, status, check, pollTimeout, last, lastErr)
	return nil
}

// newClient returns an HTTP client with bounded timeouts whose idle
// connections are closed when the test ends.
func newClient(t *testing.T, conns int) *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		ResponseHeaderTimeout: requestTimeout,
		DisableCompression:    true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// response is what a request got back.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// Vars parses a "key=value" per line body, as the frontends return.
func (r response) Vars() map[string]string {
	return parseVars(r.Body)
}

func parseVars(body string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// do sends one request. It returns an error instead of failing the test so
// that it can run on any goroutine.
func do(c *http.Client, method, url string, hdr http.Header, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// mustDo is do for the test's goroutine: it fails the test on a transport
// error.
func mustDo(t *testing.T, c *http.Client, method, url string, hdr http.Header, body []byte) response {
	t.Helper()
	r, err := do(c, method, url, hdr, body)
	require.NoError(t, err, "%s %s", method, url)
	return r
}

// waitFor polls cond until it is true, failing the test after pollTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", pollTimeout, what)
		}
		time.Sleep(pollEvery)
	}
}

// hdr builds a header from name, value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[http.CanonicalHeaderKey(kv[i])] = append(h[http.CanonicalHeaderKey(kv[i])], kv[i+1])
	}
	return h
}

// echoSPOE is the SPOE section of the message e2e-echo: the request's
// X-Req-Id header as the argument id, on every request.
const echoSPOE = `
spoe-message e2e-echo
    args id=req.hdr(x-req-id)
    event on-frontend-http-request
`

// echo is the plain handler of e2e-echo: txn.e2e.echo gets the id.
func echo(_ context.Context, m *agent.Message, act *agent.Actions) error {
	id, _ := m.String("id")
	act.SetString(agent.ScopeTransaction, "echo", id)
	return nil
}

// appBackend returns the hapConfig.Extra of an application that HAProxy
// itself plays on a free port: frontend fe_app answers every request with
// status and the body "app\n", and backend be_app sends requests to it.
func appBackend(t *testing.T, status int) string {
	port := haproxytest.FreePort(t)
	return fmt.Sprintf(`
frontend fe_app
    bind 127.0.0.1:%d
    http-request return status %d content-type text/plain string "app\n"

backend be_app
    server app1 127.0.0.1:%d
`, port, status, port)
}
