// Package exampletest runs the examples end to end: each example's own
// HAProxy configuration files, unchanged, with a real HAProxy 2.6, 3.0, 3.2
// and 3.4, in front of the example's agent and of an echo application that
// reports the request it received.
//
// The configuration files take their addresses from the environment
// (FRONTEND_BIND, BACKEND_ADDR, AGENT_ADDR and SPOE_CONF, with presetenv
// defaults), which Start sets for the test; everything listens on
// 127.0.0.1. A missing HAProxy binary skips the test loudly, or fails it
// when SPOE_REQUIRE_HAPROXY=1 (internal/haproxytest).
package exampletest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// The configuration files every example ships, in its own folder.
const (
	// ConfigLegacy is for HAProxy 2.6 and 3.0 ("mode tcp" agent backend);
	// 3.1+ also load it.
	ConfigLegacy = "haproxy-2.6.cfg"
	// ConfigSPOP is for HAProxy 3.1+ ("mode spop" agent backend).
	ConfigSPOP = "haproxy-3.2.cfg"
	// SPOEConf is the SPOE file both load.
	SPOEConf = "spoe.conf"
)

// requestTimeout bounds one HTTP request through HAProxy.
const requestTimeout = 10 * time.Second

// ConfigFor returns the configuration file an example runs with on v.
func ConfigFor(v haproxytest.Version) string {
	if v.Legacy() {
		return ConfigLegacy
	}
	return ConfigSPOP
}

// CheckConfigs runs "haproxy -c" on the example's configuration files (in
// the test's working directory, the example's folder) with every version
// each is for, and fails on an error or a warning: the legacy file on 2.6,
// 3.0, 3.2 and 3.4, the "mode spop" file on 3.2 and 3.4.
func CheckConfigs(t *testing.T) {
	for file, versions := range map[string][]haproxytest.Version{
		ConfigLegacy: haproxytest.All,
		ConfigSPOP:   {haproxytest.V32, haproxytest.V34},
	} {
		for _, v := range versions {
			t.Run(file+"/"+string(v), func(t *testing.T) {
				bin := haproxytest.Binary(t, v)
				setEnv(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
				require.NoError(t, haproxytest.Check(t, bin, readConfig(t, file)))
			})
		}
	}
}

// Stack is an example running end to end: HAProxy in front of the agent
// and of the echo application.
type Stack struct {
	// URL is the frontend's base URL, "http://127.0.0.1:port".
	URL string
	// HAProxy is the running HAProxy.
	HAProxy *haproxytest.Proc

	client *http.Client
}

// Start starts the echo application and HAProxy v (binary bin) on the
// example's configuration for v, with the agent at agentAddr. Both stop
// when the test ends. It fails the test if HAProxy prints a warning or an
// alert while starting (haproxytest.Warnings: all but the two that HAProxy
// 3.4 prints when started as root without "chroot" and "uid", which say how
// the test runs, not what the example's configuration holds).
func Start(t *testing.T, v haproxytest.Version, bin, agentAddr string) *Stack {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(app.Close)
	fe := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	setEnv(t, fe, strings.TrimPrefix(app.URL, "http://"), agentAddr)
	p := haproxytest.Start(t, bin, readConfig(t, ConfigFor(v)), fe)
	if w := haproxytest.Warnings(p.Output()); len(w) > 0 {
		t.Fatalf("HAProxy %s warned while starting on %s: %s\n%s", v, ConfigFor(v), w[0], p.Output())
	}
	// No keep-alive: each request has its own connection, so none is left
	// open (or reused across an HAProxy restart) when the test ends.
	client := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	return &Stack{URL: "http://" + fe, HAProxy: p, client: client}
}

// setEnv points the configuration files at the given addresses and at the
// example's SPOE file, for HAProxy processes started by the test.
func setEnv(t *testing.T, fe, app, agentAddr string) {
	t.Helper()
	conf, err := filepath.Abs(SPOEConf)
	require.NoError(t, err)
	t.Setenv("FRONTEND_BIND", fe)
	t.Setenv("BACKEND_ADDR", app)
	t.Setenv("AGENT_ADDR", agentAddr)
	t.Setenv("SPOE_CONF", conf)
}

func readConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err, "the example must ship %s", name)
	return string(b)
}

// Echoed is what the echo application saw of a request.
type Echoed struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Header http.Header `json:"header"`
}

// echo answers 200 with the request's method, path and headers as JSON.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Echoed{Method: r.Method, Path: r.URL.Path, Header: r.Header})
}

// Response is HAProxy's answer to one request.
type Response struct {
	Status int
	Header http.Header
	Body   string
	// Echoed is what the application saw; nil when HAProxy answered itself
	// (a deny, for instance).
	Echoed *Echoed
}

// Get sends GET path with the given header name, value pairs. It returns
// an error rather than failing the test, so that it can run on any
// goroutine.
func (s *Stack) Get(path string, header ...string) (*Response, error) {
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	if resp.Header.Get("Content-Type") == "application/json" && resp.StatusCode == http.StatusOK {
		r.Echoed = new(Echoed)
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(r.Echoed); err != nil {
			return nil, fmt.Errorf("the application's answer: %w", err)
		}
	}
	return r, nil
}

// MustGet is Get for the test's goroutine.
func (s *Stack) MustGet(t *testing.T, path string, header ...string) *Response {
	t.Helper()
	r, err := s.Get(path, header...)
	require.NoError(t, err, "GET %s", path)
	return r
}
