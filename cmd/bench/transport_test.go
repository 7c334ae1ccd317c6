package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// serveBench serves the benchmark handler on l, with opts, until the test
// ends.
func serveBench(t *testing.T, l net.Listener, opts ...agent.Option) {
	t.Helper()
	a := agent.New(opts...)
	a.Message("check-request", func(_ context.Context, m *agent.Message, act *agent.Actions) error {
		ip, _ := m.IP("ip")
		path, _ := m.Bytes("path")
		act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
		act.SetBool(agent.ScopeTransaction, "ok", ip.Is4())
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Serve(l)
	}()
	t.Cleanup(func() {
		_ = a.Close()
		<-done
	})
}

// TestTransports runs short loads over a unix socket and over mutual TLS,
// configured by the same flags as the command line.
func TestTransports(t *testing.T) {
	dir, err := os.MkdirTemp("", "bench") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ca := testpki.NewCA(t, "bench CA")
	server := ca.Issue(t, "agent")
	client := ca.Issue(t, "haproxy").WriteFiles(t, dir, "haproxy")
	caFile := testpki.WriteCAFile(t, filepath.Join(dir, "ca.crt"), ca)

	sock := filepath.Join(dir, "agent.sock")
	l, err := agent.Listen("unix:" + sock)
	require.NoError(t, err)
	serveBench(t, l)
	l, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveBench(t, l, agent.WithTLS(&tls.Config{
		Certificates: []tls.Certificate{server.TLS(t)},
		ClientCAs:    testpki.Pool(ca),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}))
	tlsAddr := l.Addr().String()

	cases := []struct {
		name  string
		addr  string
		flags tlsFlags
	}{
		{"unix socket", "unix:" + sock, tlsFlags{}},
		{"mutual TLS", tlsAddr, tlsFlags{ca: caFile, cert: client.Combined}},
		{"mutual TLS, key apart", tlsAddr, tlsFlags{ca: caFile, cert: client.Cert, key: client.Key}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(tc.addr)
			cfg.tls, err = tc.flags.config(tc.addr)
			require.NoError(t, err)
			res, err := bench(context.Background(), cfg)
			require.NoError(t, err)
			require.Zero(t, res.Errors, "%v", res.ErrorsByKind)
			require.Positive(t, res.Notifies)
		})
	}
	t.Run("mutual TLS without a client certificate", func(t *testing.T) {
		cfg := baseConfig(tlsAddr)
		cfg.tls, err = (&tlsFlags{ca: caFile}).config(tlsAddr)
		require.NoError(t, err)
		_, err := bench(context.Background(), cfg)
		require.ErrorContains(t, err, "certificate required")
	})
	t.Run("flags", func(t *testing.T) {
		c, err := (&tlsFlags{}).config(tlsAddr)
		require.NoError(t, err)
		require.Nil(t, c, "plain text without TLS flags")
		_, err = (&tlsFlags{key: client.Key}).config(tlsAddr)
		require.ErrorContains(t, err, "-tls-key needs -tls-cert")
		_, err = (&tlsFlags{ca: client.Key}).config(tlsAddr)
		require.ErrorContains(t, err, "holds no PEM certificate")
		c, err = (&tlsFlags{insecure: true}).config("unix:" + sock)
		require.NoError(t, err)
		require.Empty(t, c.ServerName)
	})
}
