package agent_test

import (
	"context"
	"crypto/tls"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// certDir holds the agent's certificate files.
type certDir struct {
	cert, key, ca string
}

func writeCerts(t *testing.T, dir string, server *testpki.Cert, cas ...*testpki.CA) certDir {
	t.Helper()
	f := server.WriteFiles(t, dir, "agent")
	return certDir{cert: f.Cert, key: f.Key, ca: testpki.WriteCAFile(t, filepath.Join(dir, "clients-ca.crt"), cas...)}
}

// TestCertFiles_Load: files that cannot serve are reported, with the file
// to blame; good ones give a mutual TLS configuration.
func TestCertFiles_Load(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	good := writeCerts(t, dir, p.server, p.ca)
	other := p.ca.Issue(t, "other").WriteFiles(t, dir, "other")
	empty := filepath.Join(dir, "empty.crt")
	require.NoError(t, os.WriteFile(empty, []byte("no PEM here\n"), 0o644))

	cases := []struct {
		name          string
		cert, key, ca string
		is            error  // errors.Is
		contains      string // in the message
	}{
		{"missing certificate", filepath.Join(dir, "nope.crt"), good.key, good.ca, fs.ErrNotExist, "reading the certificate"},
		{"missing key", good.cert, filepath.Join(dir, "nope.key"), good.ca, fs.ErrNotExist, "reading the key"},
		{"missing client CA file", good.cert, good.key, filepath.Join(dir, "nope.crt"), fs.ErrNotExist, "reading the client CA file"},
		{"key of another certificate", good.cert, other.Key, good.ca, nil, "does not match"},
		{"client CA file without certificates", good.cert, good.key, empty, agent.ErrNoCertificates, empty},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.LoadCertFiles(tc.cert, tc.key, tc.ca, nil)
			require.Error(t, err)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.ErrorContains(t, err, tc.contains)
		})
	}

	t.Run("mutual TLS", func(t *testing.T) {
		cf, err := agent.LoadCertFiles(good.cert, good.key, good.ca, nil)
		require.NoError(t, err)
		require.Equal(t, p.server.Leaf.SerialNumber, cf.Leaf().SerialNumber)
		cfg, err := cf.TLSConfig().GetConfigForClient(&tls.ClientHelloInfo{})
		require.NoError(t, err)
		require.Equal(t, tls.RequireAndVerifyClientCert, cfg.ClientAuth)
		require.GreaterOrEqual(t, cfg.MinVersion, uint16(tls.VersionTLS12))
	})
	t.Run("server authentication only", func(t *testing.T) {
		cf, err := agent.LoadCertFiles(good.cert, good.key, "", nil)
		require.NoError(t, err)
		cfg, err := cf.TLSConfig().GetConfigForClient(&tls.ClientHelloInfo{})
		require.NoError(t, err)
		require.Equal(t, tls.NoClientCert, cfg.ClientAuth)
	})
}

// peerSerial connects with cfg, runs a round trip, and returns the serial
// of the certificate the agent presented.
func peerSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	tc := dialTLS(t, addr, cfg)
	roundTrip(t, spoptest.NewClient(t, tc), "x")
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCertFiles_Rotation: Reload serves new files to new handshakes while
// established connections go on; a CA added to the client CA file admits
// its clients, and a CA removed refuses them, resumed sessions included.
func TestCertFiles_Rotation(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	files := writeCerts(t, dir, p.server, p.ca)
	cf, err := agent.LoadCertFiles(files.cert, files.key, files.ca, nil)
	require.NoError(t, err)
	ev := &events{}
	a := agent.New(agent.WithTLS(cf.TLSConfig()), agent.WithObserver(ev))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, a, l)
	addr := l.Addr().String()

	clientCfg := p.clientConfig(t, p.client)
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(8) // HAProxy resumes sessions too
	established := spoptest.NewClient(t, dialTLS(t, addr, clientCfg))
	roundTrip(t, established, "before")
	require.Equal(t, p.server.Leaf.SerialNumber.String(), peerSerial(t, addr, clientCfg))

	// A new certificate for the agent, from the same CA.
	renewed := p.ca.Issue(t, "agent renewed")
	writeCerts(t, dir, renewed, p.ca)
	require.NoError(t, cf.Reload())
	require.Equal(t, renewed.Leaf.SerialNumber.String(), peerSerial(t, addr, clientCfg))
	established.Notify(2, 1, spoptest.Msg{Name: "m"})
	require.EqualValues(t, 2, established.ReadAck().StreamID, "an established connection survives the reload")

	// A second CA joins the client CA file: its clients get in.
	ca2 := testpki.NewCA(t, "CA 2")
	client2 := p.clientConfig(t, ca2.Issue(t, "haproxy 2"))
	failed := ev.tlsFailed.Load()
	c := spoptest.NewClient(t, dialTLS(t, addr, client2))
	_, _ = c.NC.Write(spoptest.HelloFrame("pipelining", 16380))
	requireNoAnswer(t, c.NC)
	require.Eventually(t, func() bool { return ev.tlsFailed.Load() == failed+1 }, 5*time.Second, time.Millisecond)
	writeCerts(t, dir, renewed, p.ca, ca2)
	require.NoError(t, cf.Reload())
	peerSerial(t, addr, client2)

	// The first CA leaves: its client is refused, though it holds a
	// session ticket from before.
	peerSerial(t, addr, clientCfg) // a fresh ticket under the current files
	writeCerts(t, dir, renewed, ca2)
	require.NoError(t, cf.Reload())
	failed = ev.tlsFailed.Load()
	c = spoptest.NewClient(t, dialTLS(t, addr, clientCfg))
	_, _ = c.NC.Write(spoptest.HelloFrame("pipelining", 16380))
	requireNoAnswer(t, c.NC)
	require.Eventually(t, func() bool { return ev.tlsFailed.Load() == failed+1 }, 5*time.Second, time.Millisecond)
	require.ErrorContains(t, ev.lastTLSError(), "certificate signed by unknown authority")
	established.Notify(3, 1, spoptest.Msg{Name: "m"})
	require.EqualValues(t, 3, established.ReadAck().StreamID, "connections are not re-verified")
}

// TestCertFiles_Watch: Watch reloads changed files; files that do not load
// are reported once and the previous ones stay in use until the files
// change again.
func TestCertFiles_Watch(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	files := writeCerts(t, dir, p.server, p.ca)
	core, logs := observer.New(zapcore.DebugLevel)
	cf, err := agent.LoadCertFiles(files.cert, files.key, files.ca, zap.New(core))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cf.Watch(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}()

	renewed := p.ca.Issue(t, "renewed")
	writeCerts(t, dir, renewed, p.ca)
	require.Eventually(t, func() bool { return cf.Leaf().SerialNumber.Cmp(renewed.Leaf.SerialNumber) == 0 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return logs.FilterMessage("TLS files: reloaded").Len() == 1 }, 5*time.Second, time.Millisecond)

	// Half-way through a rotation: the new certificate with the old key.
	third := p.ca.Issue(t, "third")
	testpki.WriteFile(t, files.cert, third.CertPEM, 0o644)
	require.Eventually(t, func() bool { return logs.FilterMessage("TLS files: reload failed; keeping the ones in use").Len() == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // ten more checks
	require.Equal(t, 1, logs.FilterMessage("TLS files: reload failed; keeping the ones in use").Len(), "reported once")
	require.Equal(t, renewed.Leaf.SerialNumber, cf.Leaf().SerialNumber, "the previous files stay in use")

	testpki.WriteFile(t, files.key, third.KeyPEM, 0o600)
	require.Eventually(t, func() bool { return cf.Leaf().SerialNumber.Cmp(third.Leaf.SerialNumber) == 0 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return logs.FilterMessage("TLS files: reloaded").Len() == 2 }, 5*time.Second, time.Millisecond)
}

// TestCertFiles_Signal: Watch reloads on the signals it is given.
func TestCertFiles_Signal(t *testing.T) {
	// Keep SIGHUP from ending the test binary should it arrive before
	// Watch has subscribed.
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	p := newPKI(t)
	dir := t.TempDir()
	files := writeCerts(t, dir, p.server, p.ca)
	cf, err := agent.LoadCertFiles(files.cert, files.key, files.ca, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cf.Watch(ctx, 0, syscall.SIGHUP) }() // no polling
	defer func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}()

	renewed := p.ca.Issue(t, "renewed")
	writeCerts(t, dir, renewed, p.ca)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, p.server.Leaf.SerialNumber, cf.Leaf().SerialNumber, "no reload without the signal")
	require.Eventually(t, func() bool {
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		return cf.Leaf().SerialNumber.Cmp(renewed.Leaf.SerialNumber) == 0
	}, 5*time.Second, 20*time.Millisecond)
}
