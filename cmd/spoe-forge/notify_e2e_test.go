package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// seenValue is a typed value as a test sees it: the type's short name and
// a Go value (bool, int64 for signed integers, uint64 for unsigned ones,
// string for str and IP addresses, hexadecimal for bin, nil for null).
type seenValue struct {
	Type  string
	Value any
}

// seeValue converts a value for comparisons. It is written apart from
// notify's own rendering, so that the two can be checked against each
// other.
func seeValue(v codec.Value) seenValue {
	switch t := v.Type(); t {
	case codec.TypeNull:
		return seenValue{"null", nil}
	case codec.TypeBool:
		b, _ := v.Bool()
		return seenValue{"bool", b}
	case codec.TypeInt32, codec.TypeInt64:
		n, _ := v.Int()
		return seenValue{map[codec.Type]string{codec.TypeInt32: "int32", codec.TypeInt64: "int64"}[t], n}
	case codec.TypeUint32, codec.TypeUint64:
		n, _ := v.Uint()
		return seenValue{map[codec.Type]string{codec.TypeUint32: "uint32", codec.TypeUint64: "uint64"}[t], n}
	case codec.TypeIPv4, codec.TypeIPv6:
		a, _ := v.Addr()
		return seenValue{map[codec.Type]string{codec.TypeIPv4: "ipv4", codec.TypeIPv6: "ipv6"}[t], a.String()}
	case codec.TypeString:
		s, _ := v.String()
		return seenValue{"str", s}
	default:
		b, _ := v.Bytes()
		return seenValue{"bin", hex.EncodeToString(b)}
	}
}

// seenArg is one argument a handler received.
type seenArg struct {
	Name string
	seenValue
}

// seenAction is one action a handler returned.
type seenAction struct {
	Action, Scope, Name string
	seenValue
}

// decision is the handler of the comparison: what it returns depends on
// every argument, of every type HAProxy sends, and on one header of the
// req.hdrs_bin block.
type decision struct {
	mu    sync.Mutex
	calls map[string][]call // by path, in the order of the NOTIFYs
}

// call is one NOTIFY's message as the handler saw it, and its answer.
type call struct {
	args    []seenArg
	actions []seenAction
}

func (d *decision) handle(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	var c call
	for _, a := range m.Args() {
		c.args = append(c.args, seenArg{string(a.Name), seeValue(a.Value)})
	}
	set := func(scope agent.Scope, name string, v codec.Value) {
		act.Set(scope, name, v)
		c.actions = append(c.actions, seenAction{"set-var", scope.String(), name, seeValue(v)})
	}
	unset := func(scope agent.Scope, name string) {
		act.Unset(scope, name)
		c.actions = append(c.actions, seenAction{"unset-var", scope.String(), name, seenValue{}})
	}
	ip, _ := m.IP("client_ip")
	path, _ := m.String("path")
	n, _ := m.Int("n")
	method, _ := m.String("method")
	admin := strings.HasPrefix(path, "/admin")
	set(agent.ScopeTransaction, "allowed", codec.Bool(!admin || ip.IsLoopback()))
	set(agent.ScopeTransaction, "score", codec.Int64(int64(len(path))+n))
	set(agent.ScopeTransaction, "client", codec.Addr(ip))
	set(agent.ScopeRequest, "method", codec.String(method))
	if h, ok := m.Headers("headers"); ok {
		set(agent.ScopeTransaction, "headers", codec.Uint32(uint32(h.Count(""))))
		if auth, ok := h.Get("Authorization"); ok {
			set(agent.ScopeTransaction, "auth", codec.Binary(auth))
		} else {
			unset(agent.ScopeTransaction, "auth")
		}
	}
	if m.IsNull("missing") {
		set(agent.ScopeTransaction, "missing", codec.Int32(-1))
	}
	if strings.HasPrefix(path, "/logout") {
		unset(agent.ScopeSession, "user")
	}
	d.mu.Lock()
	d.calls[path] = append(d.calls[path], c)
	d.mu.Unlock()
	return nil
}

// last returns the last call for path.
func (d *decision) last(t *testing.T, path string, want int) call {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Len(t, d.calls[path], want, "NOTIFYs for %s", path)
	return d.calls[path][want-1]
}

// notifyArg renders an argument as notify's --arg, so that notify sends
// what HAProxy sent.
func notifyArg(t *testing.T, a seenArg) string {
	t.Helper()
	switch a.Type {
	case "null":
		return a.Name + "=null"
	case "bin":
		return a.Name + "=hex:" + a.Value.(string)
	default:
		return fmt.Sprintf("%s=%s:%v", a.Name, a.Type, a.Value)
	}
}

// jsonActions reads the actions of notify's --json output in the form of
// seenAction.
func jsonActions(t *testing.T, out []byte) []seenAction {
	t.Helper()
	var res struct {
		OK  bool `json:"ok"`
		Ack struct {
			Actions []struct {
				Action, Scope, Name, Type string
				Value                     any    `json:"value"`
				ValueHex                  string `json:"value_hex"`
			} `json:"actions"`
		} `json:"ack"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&res), "%s", out)
	require.True(t, res.OK, "%s", out)
	var acts []seenAction
	for _, a := range res.Ack.Actions {
		v := seenValue{Type: a.Type, Value: a.Value}
		switch {
		case a.Action == "unset-var":
			v = seenValue{}
		case a.ValueHex != "":
			v.Value = a.ValueHex
		case strings.HasPrefix(a.Type, "uint"):
			n, err := strconv.ParseUint(string(a.Value.(json.Number)), 10, 64)
			require.NoError(t, err)
			v.Value = n
		case strings.HasPrefix(a.Type, "int"):
			n, err := a.Value.(json.Number).Int64()
			require.NoError(t, err)
			v.Value = n
		}
		acts = append(acts, seenAction{a.Action, a.Scope, a.Name, v})
	}
	return acts
}

// TestNotifyMatchesHAProxy: for each request, real HAProxy (2.6, 3.0, 3.2)
// sends its NOTIFY to an agent, and notify then sends the same message,
// built from the arguments the agent received from HAProxy (an IPV4
// source, STRING path and method, an INT64, a NULL for a missing header and
// the BINARY req.hdrs_bin block). The agent receives the same arguments
// from both and returns the same actions, and notify prints exactly those;
// HAProxy applied them (the frontend's answer shows the variables).
func TestNotifyMatchesHAProxy(t *testing.T) {
	for _, v := range haproxytest.All {
		t.Run(string(v), func(t *testing.T) {
			bin := haproxytest.Binary(t, v)
			d := &decision{calls: map[string][]call{}}
			a := agent.New()
			a.Message("check-request", d.handle)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			served := make(chan error, 1)
			go func() { served <- a.Serve(l) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
				defer cancel()
				require.NoError(t, a.Shutdown(ctx))
				require.ErrorIs(t, <-served, agent.ErrAgentClosed)
			})
			agentPort := l.Addr().(*net.TCPAddr).Port

			fe := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
			haproxytest.Start(t, bin, compareConfig(t, v, fe, l.Addr().String()), fe)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			t.Cleanup(client.CloseIdleConnections)

			style := "3.2"
			if v.Legacy() {
				style = "2.6"
			}
			requests := []struct {
				method, path string
				header       []string
				want         string // HAProxy's answer: the variables it stored
			}{
				{"GET", "/", nil, "allowed=1 score=4 auth=-"},
				{"GET", "/admin/users", []string{"Authorization", "Bearer abc.def", "X-Forwarded-For", "192.0.2.1"}, "allowed=1 score=15 auth=Bearer abc.def"},
				{"POST", "/logout", []string{"authorization", "Basic dTpw", "Cookie", "a=1", "Cookie", "b=2"}, "allowed=1 score=10 auth=Basic dTpw"},
			}
			for _, r := range requests {
				t.Run(r.method+" "+r.path, func(t *testing.T) {
					req, err := http.NewRequest(r.method, "http://"+fe+r.path, nil)
					require.NoError(t, err)
					for i := 0; i+1 < len(r.header); i += 2 {
						req.Header.Add(r.header[i], r.header[i+1])
					}
					resp, err := client.Do(req)
					require.NoError(t, err)
					body, err := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					require.NoError(t, err)
					require.Equal(t, 200, resp.StatusCode, "%s", body)
					require.Equal(t, r.want, strings.TrimSpace(string(body)), "HAProxy applied the ACK")
					fromHAProxy := d.last(t, r.path, 1)
					require.NotEmpty(t, fromHAProxy.args)

					args := []string{"notify", "--json", "--style", style, "--port", strconv.Itoa(agentPort), "--message", "check-request"}
					for _, a := range fromHAProxy.args {
						args = append(args, "--arg", notifyArg(t, a))
					}
					var stdout, stderr bytes.Buffer
					require.Equal(t, exitAck, run(args, nil, &stdout, &stderr), "stderr: %s", stderr.String())
					fromNotify := d.last(t, r.path, 2)
					require.Equal(t, fromHAProxy.args, fromNotify.args, "the agent received the same message")
					require.Equal(t, fromHAProxy.actions, fromNotify.actions, "the agent returned the same actions")
					require.Equal(t, fromHAProxy.actions, jsonActions(t, stdout.Bytes()), "notify printed them")

					// The text output too, in a second NOTIFY.
					stdout.Reset()
					require.Equal(t, exitAck, run(append([]string{"notify"}, args[2:]...), nil, &stdout, &stderr), "stderr: %s", stderr.String())
					lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
					require.Len(t, lines, 2+len(fromHAProxy.actions), stdout.String())
					require.Equal(t, "set-var txn.allowed bool true", lines[2])
					require.Equal(t, fmt.Sprintf("set-var txn.score int64 %d", fromHAProxy.actions[1].Value), lines[3])
					require.Equal(t, "set-var txn.client ipv4 127.0.0.1", lines[4])
					require.Equal(t, fmt.Sprintf("set-var req.method str %q", r.method), lines[5])
				})
			}
		})
	}
}

// compareConfig returns the HAProxy configuration of the comparison: the
// frontend fe sends check-request to the agent and answers with the
// variables it stored.
func compareConfig(t *testing.T, v haproxytest.Version, fe, agentAddr string) string {
	t.Helper()
	dir := t.TempDir()
	spoe := `
[nt]
spoe-agent nt-agent
    messages check-request
    option var-prefix nt
` + map[bool]string{true: "    timeout hello 2s\n    timeout idle 60s\n"}[v.Legacy()] + `
    timeout processing 2s
    use-backend be_spoa

spoe-message check-request
    args client_ip=src path=path n=int(3) method=method missing=req.hdr(x-missing) headers=req.hdrs_bin
    event on-frontend-http-request
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "spoe.conf"), []byte(spoe), 0o644))
	mode := "spop"
	if v.Legacy() {
		mode = "tcp"
	}
	return fmt.Sprintf(`
global
    log stderr format raw local0 warning

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind %s
    filter spoe engine nt config %s/spoe.conf
    http-request return status 200 content-type text/plain lf-string "allowed=%%[var(txn.nt.allowed)] score=%%[var(txn.nt.score)] auth=%%[var(txn.nt.auth,-)]"

backend be_spoa
    mode %s
    timeout connect 2s
    timeout server 60s
    server a1 %s
`, fe, dir, mode, agentAddr)
}
