package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// serveAgent serves an agent answering "check-request" with txn.ok=true on
// l until the test ends.
func serveAgent(t *testing.T, l net.Listener, opts ...agent.Option) {
	t.Helper()
	a := agent.New(opts...)
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	serve(t, a, l)
}

// serve runs a.Serve(l) until the test ends, then closes a and checks that
// Serve returned ErrAgentClosed.
func serve(t *testing.T, a *agent.Agent, l net.Listener) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		select {
		case err := <-served:
			require.ErrorIs(t, err, agent.ErrAgentClosed)
		case <-time.After(ioTimeout):
			t.Error("agent.Serve did not return after Close")
		}
	})
}

// tlsFiles are the PEM files of a test PKI: HAProxy's side (ca: the agent's
// CA, client: certificate, key and both together) and a stranger's.
type tlsFiles struct {
	ca, otherCA         string
	client, clientKey   string
	clientPEM, stranger string
	server              *tls.Config // the agent's mutual TLS
	serverOnly          *tls.Config // the agent's TLS without client certificates
}

func newTLSFiles(t *testing.T) *tlsFiles {
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, "CA"), testpki.NewCA(t, "other CA")
	srv := ca.Issue(t, "agent")
	client := ca.Issue(t, "haproxy").WriteFiles(t, dir, "haproxy")
	stranger := other.Issue(t, "stranger").WriteFiles(t, dir, "stranger")
	return &tlsFiles{
		ca:        testpki.WriteCAFile(t, filepath.Join(dir, "ca.crt"), ca),
		otherCA:   testpki.WriteCAFile(t, filepath.Join(dir, "other-ca.crt"), other),
		client:    client.Cert,
		clientKey: client.Key,
		clientPEM: client.Combined,
		stranger:  stranger.Combined,
		server: &tls.Config{
			Certificates: []tls.Certificate{srv.TLS(t)},
			ClientCAs:    testpki.Pool(ca),
			ClientAuth:   tls.RequireAndVerifyClientCert,
		},
		serverOnly: &tls.Config{Certificates: []tls.Certificate{srv.TLS(t)}},
	}
}

// TestTransport runs healthcheck and notify over unix sockets and TLS, with
// their exit statuses and what they print.
func TestTransport(t *testing.T) {
	f := newTLSFiles(t)
	listenTCP := func(t *testing.T) net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return l
	}
	dir, err := os.MkdirTemp("", "sf") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	plainTCP := listenTCP(t)
	serveAgent(t, plainTCP)
	mtlsTCP := listenTCP(t)
	serveAgent(t, mtlsTCP, agent.WithTLS(f.server))
	tlsTCP := listenTCP(t)
	serveAgent(t, tlsTCP, agent.WithTLS(f.serverOnly))
	plainSock := filepath.Join(dir, "plain.sock")
	l, err := agent.Listen("unix:" + plainSock)
	require.NoError(t, err)
	serveAgent(t, l)
	mtlsSock := filepath.Join(dir, "mtls.sock")
	l, err = agent.Listen("unix:" + mtlsSock)
	require.NoError(t, err)
	serveAgent(t, l, agent.WithTLS(f.server))
	port := func(l net.Listener) string { return strconv.Itoa(l.Addr().(*net.TCPAddr).Port) }

	cases := []struct {
		name   string
		args   []string // after "healthcheck" (and "notify", with --message check-request)
		code   int
		stdout []string
		stderr []string
	}{
		{"unix socket", []string{"--unix", plainSock}, 0,
			[]string{"unix:" + plainSock + " answered version 2.0"}, nil},
		{"mutual TLS, separate key", []string{"--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.client, "--key", f.clientKey}, 0,
			[]string{"127.0.0.1:" + port(mtlsTCP) + " answered", "over TLS 1.3"}, nil},
		{"mutual TLS, HAProxy's combined crt file", []string{"--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.clientPEM}, 0,
			[]string{"over TLS 1.3"}, nil},
		{"mutual TLS with a server name", []string{"--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.clientPEM, "--server-name", testpki.ServerName}, 0,
			[]string{"over TLS 1.3"}, nil},
		{"mutual TLS on a unix socket", []string{"--unix", mtlsSock, "--ca", f.ca, "--cert", f.clientPEM, "--server-name", testpki.ServerName}, 0,
			[]string{"unix:" + mtlsSock + " answered", "over TLS 1.3"}, nil},
		{"TLS without client certificate", []string{"--port", port(tlsTCP), "--ca", f.ca}, 0,
			[]string{"over TLS 1.3"}, nil},
		{"TLS, agent not verified", []string{"--port", port(tlsTCP), "--insecure-skip-verify"}, 0,
			[]string{"over TLS 1.3"}, nil},

		{"no client certificate for a mutual TLS agent", []string{"--port", port(mtlsTCP), "--ca", f.ca}, 1,
			nil, []string{"the agent refused the TLS connection", "certificate required"}},
		{"client certificate of another CA", []string{"--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.stranger}, 1,
			nil, []string{"the agent refused the TLS connection", "unknown certificate authority"}},
		{"agent certificate not trusted", []string{"--port", port(mtlsTCP), "--ca", f.otherCA, "--cert", f.clientPEM}, 1,
			nil, []string{"TLS: the agent's certificate is not trusted", "unknown authority"}},
		{"agent certificate for another name", []string{"--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.clientPEM, "--server-name", "elsewhere.test"}, 1,
			nil, []string{"not trusted", "elsewhere.test"}},
		{"TLS to a plain-text agent", []string{"--port", port(plainTCP), "--tls", "--insecure-skip-verify"}, 1,
			nil, []string{"TLS: the agent does not speak TLS"}},
		{"plain text to a TLS agent", []string{"--port", port(mtlsTCP)}, 1,
			nil, []string{"closed the connection"}},
		{"no such socket", []string{"--unix", filepath.Join(dir, "missing.sock")}, 1,
			nil, []string{"no such socket file"}},

		{"--unix with --port", []string{"--unix", plainSock, "--port", "1"}, 2, nil, []string{"--unix cannot be combined with --host or --port"}},
		{"--key without --cert", []string{"--key", f.clientKey}, 2, nil, []string{"--key needs --cert"}},
		{"TLS on a unix socket without a name", []string{"--unix", mtlsSock, "--tls"}, 2, nil, []string{"needs --server-name"}},
		{"--insecure-skip-verify with --ca", []string{"--insecure-skip-verify", "--ca", f.ca}, 2, nil, []string{"--ca and --server-name would be ignored"}},
		{"missing CA file", []string{"--ca", filepath.Join(dir, "nope.crt")}, 2, nil, []string{"--ca: open", "no such file"}},
		{"CA file without certificates", []string{"--ca", f.clientKey}, 2, nil, []string{"holds no PEM certificate"}},
		{"certificate without its key", []string{"--cert", f.client}, 2, nil, []string{"--cert/--key:"}},
	}
	for _, tc := range cases {
		for _, cmd := range []string{"healthcheck", "notify"} {
			t.Run(cmd+"/"+tc.name, func(t *testing.T) {
				args := append([]string{cmd}, tc.args...)
				if cmd == "notify" {
					args = append(args, "--message", "check-request")
				}
				var stdout, stderr bytes.Buffer
				code := run(args, nil, &stdout, &stderr)
				require.Equal(t, tc.code, code, "stdout %q, stderr %q", stdout.String(), stderr.String())
				out := tc.stdout
				if cmd == "notify" && tc.code == 0 {
					out = []string{"set-var txn.ok bool true"}
					if strings.Contains(strings.Join(tc.stdout, " "), "over TLS") {
						out = append(out, ", over TLS 1.3\n")
					}
				}
				for _, w := range out {
					require.Contains(t, stdout.String(), w)
				}
				for _, w := range tc.stderr {
					require.Contains(t, stderr.String(), w)
				}
			})
		}
	}

	t.Run("notify --json names the TLS version", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run([]string{"notify", "--json", "--port", port(mtlsTCP), "--ca", f.ca, "--cert", f.clientPEM, "--message", "check-request"}, nil, &stdout, &stderr)
		require.Equal(t, exitAck, code, stderr.String())
		var res struct {
			Agent string `json:"agent"`
			TLS   string `json:"tls"`
			OK    bool   `json:"ok"`
		}
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &res))
		require.Equal(t, "TLS 1.3", res.TLS)
		require.True(t, res.OK)
	})
}
