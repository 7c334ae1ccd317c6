//go:build scale

package agent_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestIdleConnectionsTLS is TestIdleConnections over mutual TLS: it holds
// SPOE_SCALE_CONNS (default 10,000) idle connections after their handshake
// and HELLO, opened by a child process, and reports the agent's memory per
// idle TLS connection, to compare with the plain one's.
func TestIdleConnectionsTLS(t *testing.T) {
	if addr := os.Getenv("SPOE_SCALE_CHILD"); addr != "" {
		cfg := childTLSConfig(t, os.Getenv("SPOE_SCALE_TLS_DIR"))
		scaleChild(t, addr, func(network, addr string) (net.Conn, error) { return tls.Dial(network, addr, cfg) })
		return
	}
	p := newPKI(t)
	dir := t.TempDir()
	p.client.WriteFiles(t, dir, "client")
	testpki.WriteCAFile(t, filepath.Join(dir, "ca.crt"), p.ca)
	a := agent.New(agent.WithTLS(p.serverConfig(t)))
	a.Message("m", echo)
	addr := start(t, a)
	idle := holdIdle(t, a, addr, "TestIdleConnectionsTLS", "idle mutual TLS", []string{"SPOE_SCALE_TLS_DIR=" + dir}, 2*time.Minute)
	idle.release()
	require.Eventually(t, func() bool { return a.Connections() == 0 }, time.Minute, 10*time.Millisecond)
}

// childTLSConfig is the child's client configuration: the certificate and
// CA its parent wrote to dir.
func childTLSConfig(t *testing.T, dir string) *tls.Config {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: testpki.ServerName}
}
