package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// pki is a CA, the agent's certificate and HAProxy's client certificate,
// both signed by the CA, and a second CA that signs nothing the agent
// trusts.
type pki struct {
	ca, other      *testpki.CA
	server, client *testpki.Cert
}

func newPKI(t testing.TB) *pki {
	ca := testpki.NewCA(t, "test CA")
	return &pki{
		ca:     ca,
		other:  testpki.NewCA(t, "another CA"),
		server: ca.Issue(t, "agent"),
		client: ca.Issue(t, "haproxy"),
	}
}

// serverConfig is the agent's mutual TLS configuration.
func (p *pki) serverConfig(t testing.TB) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server.TLS(t)},
		ClientCAs:    testpki.Pool(p.ca),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// clientConfig is HAProxy's side: it trusts the CA and presents cert (none
// when nil) whatever CAs the agent asks for, as HAProxy's "crt" does (Go's
// client would otherwise keep a certificate of another CA to itself).
func (p *pki) clientConfig(t testing.TB, cert *testpki.Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: testpki.Pool(p.ca), ServerName: testpki.ServerName}
	if cert != nil {
		tc := cert.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return cfg
}

// dialTLS connects to addr over TLS and completes the handshake.
func dialTLS(t testing.TB, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: spoptest.Timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), spoptest.Timeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	return nc.(*tls.Conn)
}

// tlsTransport reaches an agent served with mutual TLS, as HAProxy with
// "ssl verify required ca-file ... crt ..." does.
func tlsTransport(t *testing.T) transport {
	p := newPKI(t)
	cfg := p.clientConfig(t, p.client)
	return transport{
		opts: []agent.Option{agent.WithTLS(p.serverConfig(t))},
		dial: func(t *testing.T, addr string) *spoptest.Client {
			return spoptest.NewClient(t, dialTLS(t, addr, cfg))
		},
	}
}

// TestBadFramesTLS runs the bad-input corpus over mutual TLS: the same
// statuses, the neighbour served throughout, no leak (goleak in TestMain).
func TestBadFramesTLS(t *testing.T) { testBadFrames(t, tlsTransport(t)) }

// events counts what the agent reports about its connections.
type events struct {
	observe.Nop
	opened, tlsOK, tlsFailed atomic.Int64
	refused                  [2]atomic.Int64 // by observe.Refusal
	mu                       sync.Mutex
	tlsErrs                  []error
}

func (e *events) ConnOpened() { e.opened.Add(1) }

func (e *events) ConnRefused(r observe.Refusal) { e.refused[r].Add(1) }

func (e *events) TLSHandshake(err error) {
	if err == nil {
		e.tlsOK.Add(1)
		return
	}
	e.tlsFailed.Add(1)
	e.mu.Lock()
	e.tlsErrs = append(e.tlsErrs, err)
	e.mu.Unlock()
}

func (e *events) lastTLSError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.tlsErrs) == 0 {
		return nil
	}
	return e.tlsErrs[len(e.tlsErrs)-1]
}

// serveOn serves a on l and returns a function that shuts it down (also
// run at cleanup) and returns how long that took.
func serveOn(t *testing.T, a *agent.Agent, l net.Listener) func() time.Duration {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	var once sync.Once
	var took time.Duration
	stop := func() time.Duration {
		once.Do(func() {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			assert.NoError(t, a.Shutdown(ctx))
			assert.ErrorIs(t, <-served, agent.ErrAgentClosed)
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

// roundTrip sends a HELLO and a NOTIFY on c and checks the ACK.
func roundTrip(t *testing.T, c *spoptest.Client, id string) {
	t.Helper()
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("id", codec.String(id))}})
	ack := c.ReadAck()
	v, ok := ack.Var("id")
	require.True(t, ok, "the ACK sets no id")
	s, _ := v.Value.Bytes()
	require.Equal(t, id, string(s))
}

// requireNoAnswer checks that nothing but an error comes out of nc: the
// agent closed it, or TLS failed, without one byte of SPOP.
func requireNoAnswer(t *testing.T, nc net.Conn) error {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(spoptest.Timeout))
	var b [64]byte
	n, err := nc.Read(b[:])
	require.Zero(t, n, "the agent answered %q", b[:n])
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the agent neither answered nor closed: %v", err)
	return err
}

// TestTLS_Mutual: a client with a certificate of the trusted CA gets its
// variables; the handshake is counted, and so is the connection.
func TestTLS_Mutual(t *testing.T) {
	p := newPKI(t)
	ev := &events{}
	a := agent.New(agent.WithTLS(p.serverConfig(t)), agent.WithObserver(ev))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, a, l)

	tc := dialTLS(t, l.Addr().String(), p.clientConfig(t, p.client))
	st := tc.ConnectionState()
	require.Equal(t, "agent", st.PeerCertificates[0].Subject.CommonName)
	roundTrip(t, spoptest.NewClient(t, tc), "over-tls")
	require.EqualValues(t, 1, ev.tlsOK.Load())
	require.EqualValues(t, 0, ev.tlsFailed.Load())
	require.EqualValues(t, 1, ev.opened.Load())
}

// TestTLS_Refused: clients that fail the handshake are closed without a
// byte of SPOP, counted as failed handshakes (never as connections), while
// a connection with the right certificate on the same agent keeps working.
func TestTLS_Refused(t *testing.T) {
	p := newPKI(t)
	ev := &events{}
	a := agent.New(agent.WithTLS(p.serverConfig(t)), agent.WithObserver(ev), agent.WithHelloTimeout(2*time.Second))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, a, l)
	addr := l.Addr().String()

	// The neighbour: one connection, established before and used after
	// every case.
	good := spoptest.NewClient(t, dialTLS(t, addr, p.clientConfig(t, p.client)))
	roundTrip(t, good, "before")
	sid := uint64(100)

	strange := p.other.Issue(t, "stranger")
	cases := []struct {
		name string
		// try connects and returns the connection, after sending what
		// the case sends.
		try       func(t *testing.T) net.Conn
		clientErr string // in the client's error, "" for any
		agentErr  string // in the error of the agent's handshake
	}{
		{"no client certificate", func(t *testing.T) net.Conn {
			// TLS 1.3: the client's handshake ends before the agent has
			// checked its certificate; the refusal comes on the first read.
			tc := dialTLS(t, addr, p.clientConfig(t, nil))
			_, _ = tc.Write(spoptest.HelloFrame("pipelining", 16380))
			return tc
		}, "certificate required", "client didn't provide a certificate"},
		{"client certificate from another CA", func(t *testing.T) net.Conn {
			tc := dialTLS(t, addr, p.clientConfig(t, strange))
			_, _ = tc.Write(spoptest.HelloFrame("pipelining", 16380))
			return tc
		}, "unknown certificate authority", "certificate signed by unknown authority"},
		{"client that does not trust the agent's CA", func(t *testing.T) net.Conn {
			cfg := p.clientConfig(t, p.client)
			cfg.RootCAs = testpki.Pool(p.other)
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			tc := tls.Client(nc, cfg)
			require.ErrorContains(t, tc.Handshake(), "certificate signed by unknown authority")
			return nc
		}, "", "remote error: tls: "},
		{"TLS 1.1 client", func(t *testing.T) net.Conn {
			cfg := p.clientConfig(t, p.client)
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			require.Error(t, tls.Client(nc, cfg).Handshake())
			return nc
		}, "", "unsupported versions"},
		{"plain-text SPOP client", func(t *testing.T) net.Conn {
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			_, err = nc.Write(spoptest.HelloFrame("pipelining", 16380))
			require.NoError(t, err)
			return nc
		}, "", "first record does not look like a TLS handshake"},
		{"HTTP request", func(t *testing.T) net.Conn {
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: agent\r\n\r\n")
			require.NoError(t, err)
			return nc
		}, "", "first record does not look like a TLS handshake"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			failed, opened := ev.tlsFailed.Load(), ev.opened.Load()
			nc := tc.try(t)
			defer nc.Close()
			err := requireNoAnswer(t, nc)
			if tc.clientErr != "" {
				require.ErrorContains(t, err, tc.clientErr)
			}
			require.Eventually(t, func() bool { return ev.tlsFailed.Load() == failed+1 }, 5*time.Second, time.Millisecond)
			require.ErrorContains(t, ev.lastTLSError(), tc.agentErr)
			require.Equal(t, opened, ev.opened.Load(), "a failed handshake is not a connection")

			sid++
			good.Notify(sid, 1, spoptest.Msg{Name: "m"})
			require.Equal(t, sid, good.ReadAck().StreamID, "the neighbour must keep being served")
			require.Eventually(t, func() bool { return a.Connections() == 1 }, 5*time.Second, time.Millisecond)
		})
	}
}

// TestTLS_FailureLogLimited: a burst of failed handshakes is logged once at
// Warn level, saying why; the next line, once the period has passed, counts
// the failures it did not log. Every one is counted and logged at Debug.
func TestTLS_FailureLogLimited(t *testing.T) {
	p := newPKI(t)
	core, logs := observer.New(zapcore.DebugLevel)
	ev := &events{}
	const every = 300 * time.Millisecond
	a := agent.New(agent.WithTLS(p.serverConfig(t)), agent.WithObserver(ev), agent.WithLogger(zap.New(core)),
		agent.WithRefusalLogEvery(every))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, a, l)

	scan := func(n int) {
		for range n {
			nc, err := net.Dial("tcp", l.Addr().String())
			require.NoError(t, err)
			_, _ = io.WriteString(nc, "SSH-2.0-scanner\r\n")
			requireNoAnswer(t, nc)
			_ = nc.Close()
		}
	}
	warns := func() []observer.LoggedEntry {
		return logs.FilterMessage("TLS handshake failed").FilterLevelExact(zapcore.WarnLevel).AllUntimed()
	}
	start := time.Now()
	scan(20)
	require.Eventually(t, func() bool { return ev.tlsFailed.Load() == 20 }, 5*time.Second, time.Millisecond)
	if time.Since(start) >= every {
		t.Skipf("the burst took %v, longer than the log period %v: the machine is too slow for this test", time.Since(start), every)
	}
	w := warns()
	require.Len(t, w, 1, "a burst must be logged once")
	require.Contains(t, w[0].ContextMap()["error"], "first record does not look like a TLS handshake")
	require.Contains(t, w[0].ContextMap(), "remote")
	require.EqualValues(t, 0, w[0].ContextMap()["unlogged_since_previous"])
	require.Eventually(t, func() bool {
		return logs.FilterMessage("TLS handshake failed").FilterLevelExact(zapcore.DebugLevel).Len() == 20
	}, 5*time.Second, time.Millisecond, "every failure is logged at Debug level")

	time.Sleep(every)
	scan(1)
	require.Eventually(t, func() bool { return len(warns()) == 2 }, 5*time.Second, time.Millisecond)
	require.EqualValues(t, 19, warns()[1].ContextMap()["unlogged_since_previous"])
}

// TestTLS_HelloDeadlineCoversHandshake: the handshake runs under the HELLO
// deadline, counted from accept; it is not restarted once the handshake is
// done. A client that connects and never speaks is closed at the deadline.
func TestTLS_HelloDeadlineCoversHandshake(t *testing.T) {
	p := newPKI(t)
	const hello = 600 * time.Millisecond
	ev := &events{}
	a := agent.New(agent.WithTLS(p.serverConfig(t)), agent.WithHelloTimeout(hello), agent.WithObserver(ev))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, a, l)
	cfg := p.clientConfig(t, p.client)

	// late connects, waits before the handshake and again before the
	// HELLO, and returns what the HELLO got: an AGENT-HELLO in time, an
	// AGENT-DISCONNECT (or a closed connection) after the deadline.
	late := func(t *testing.T, beforeTLS, beforeHello time.Duration) (codec.Frame, error) {
		nc, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		defer nc.Close()
		time.Sleep(beforeTLS)
		tc := tls.Client(nc, cfg)
		require.NoError(t, tc.Handshake())
		time.Sleep(beforeHello)
		c := spoptest.NewClient(t, tc)
		if _, err := tc.Write(spoptest.HelloFrame("pipelining", 16380)); err != nil {
			return codec.Frame{}, err
		}
		return c.TryReadFrame()
	}
	t.Run("in time", func(t *testing.T) {
		f, err := late(t, hello/3, 0)
		require.NoError(t, err)
		require.Equal(t, codec.FrameAgentHello, f.Type)
	})
	t.Run("handshake in time, HELLO after the deadline", func(t *testing.T) {
		f, err := late(t, hello/2, hello*2/3)
		if err == nil {
			require.Equal(t, codec.FrameAgentDisconnect, f.Type, "the HELLO came %v after accept, past the %v deadline", hello*7/6, hello)
		}
	})
	t.Run("silent client", func(t *testing.T) {
		failed := ev.tlsFailed.Load()
		nc, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		defer nc.Close()
		start := time.Now()
		requireNoAnswer(t, nc)
		took := time.Since(start)
		require.GreaterOrEqual(t, took, hello*3/4)
		require.Less(t, took, hello+2*time.Second)
		require.Eventually(t, func() bool { return ev.tlsFailed.Load() == failed+1 }, 5*time.Second, time.Millisecond)
		var ne net.Error
		require.ErrorAs(t, ev.lastTLSError(), &ne)
		require.True(t, ne.Timeout(), "%v", ne)
	})
}

// TestTLS_HandshakesOffTheAcceptLoop: connections stuck in their handshake
// hold up neither new connections nor Shutdown.
func TestTLS_HandshakesOffTheAcceptLoop(t *testing.T) {
	p := newPKI(t)
	a := agent.New(agent.WithTLS(p.serverConfig(t)), agent.WithHelloTimeout(time.Minute))
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := serveOn(t, a, l)

	var stuck []net.Conn
	for range 20 {
		nc, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		stuck = append(stuck, nc)
	}
	// Half of them start a ClientHello and never finish it.
	for _, nc := range stuck[:10] {
		_, err := nc.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return a.Connections() == 20 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	roundTrip(t, spoptest.NewClient(t, dialTLS(t, l.Addr().String(), p.clientConfig(t, p.client))), "past the stuck ones")
	require.Less(t, time.Since(start), 2*time.Second)

	took := stop()
	require.Less(t, took, 5*time.Second, "Shutdown must end handshakes in progress")
	for _, nc := range stuck {
		requireNoAnswer(t, nc)
		_ = nc.Close()
	}
}

// TestTLS_ConfigWithoutCertificate: a TLS configuration that cannot serve
// any handshake is reported by Serve.
func TestTLS_ConfigWithoutCertificate(t *testing.T) {
	a := agent.New(agent.WithTLS(&tls.Config{}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = a.Serve(l)
	require.ErrorContains(t, err, "no certificate")
	require.NoError(t, a.Close())
}

// TestAllowedNetworks: a TCP source outside the allowlist is closed before
// the agent reads or writes anything, and counted; inside, it is served.
func TestAllowedNetworks(t *testing.T) {
	cases := []struct {
		name    string
		allow   []string
		allowed bool
	}{
		{"loopback allowed", []string{"10.0.0.0/8", "127.0.0.0/8"}, true},
		{"single address", []string{"127.0.0.1/32"}, true},
		{"IPv4-mapped prefix", []string{"::ffff:127.0.0.0/104"}, true},
		{"other networks only", []string{"10.0.0.0/8", "192.0.2.0/24", "::1/128"}, false},
		{"empty list", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var prefixes []netip.Prefix
			for _, s := range tc.allow {
				prefixes = append(prefixes, netip.MustParsePrefix(s))
			}
			core, logs := observer.New(zapcore.DebugLevel)
			ev := &events{}
			a := agent.New(agent.WithAllowedNetworks(prefixes...), agent.WithObserver(ev), agent.WithLogger(zap.New(core)))
			a.Message("m", echo)
			addr := start(t, a)
			if tc.allowed {
				roundTrip(t, spoptest.Dial(t, addr), "allowed")
				require.Zero(t, ev.refused[observe.RefusedNotAllowed].Load())
				return
			}
			for range 3 {
				c := spoptest.Dial(t, addr)
				_, _ = c.NC.Write(spoptest.HelloFrame("pipelining", 16380))
				requireNoAnswer(t, c.NC)
			}
			require.Eventually(t, func() bool { return ev.refused[observe.RefusedNotAllowed].Load() == 3 }, 5*time.Second, time.Millisecond)
			require.Zero(t, ev.opened.Load(), "a refused connection is never served")
			w := logs.FilterMessage("connection refused: source outside the allowlist").AllUntimed()
			require.Len(t, w, 1, "logged once per period")
			require.Contains(t, w[0].ContextMap()["remote"], "127.0.0.1:")
		})
	}
}

// TestAllowedNetworksNotForUnix: the allowlist filters TCP sources; a
// unix socket is guarded by its file's permissions.
func TestAllowedNetworksNotForUnix(t *testing.T) {
	a := agent.New(agent.WithAllowedNetworks(netip.MustParsePrefix("192.0.2.0/24")))
	a.Message("m", echo)
	path := shortTempDir(t) + "/a.sock"
	l, err := agent.Listen("unix:" + path)
	require.NoError(t, err)
	serveOn(t, a, l)
	nc, err := net.Dial("unix", path)
	require.NoError(t, err)
	roundTrip(t, spoptest.NewClient(t, nc), "unix")
}

// TestConnectionLimitCounted: a connection past WithMaxConnections is
// refused before it is read, counted, and logged once.
func TestConnectionLimitCounted(t *testing.T) {
	ev := &events{}
	core, logs := observer.New(zapcore.DebugLevel)
	a := agent.New(agent.WithMaxConnections(1), agent.WithObserver(ev), agent.WithLogger(zap.New(core)))
	a.Message("m", echo)
	addr := start(t, a)
	first := spoptest.Dial(t, addr)
	roundTrip(t, first, "first")
	for range 3 {
		c := spoptest.Dial(t, addr)
		requireNoAnswer(t, c.NC)
	}
	require.EqualValues(t, 3, ev.refused[observe.RefusedLimit].Load())
	require.Len(t, logs.FilterMessage("connection limit reached: closing a new connection").AllUntimed(), 1)
	first.Notify(2, 1, spoptest.Msg{Name: "m"})
	require.EqualValues(t, 2, first.ReadAck().StreamID)
}

// TestTLS_OverUnixSocket: WithTLS applies to every listener, unix ones too.
func TestTLS_OverUnixSocket(t *testing.T) {
	p := newPKI(t)
	a := agent.New(agent.WithTLS(p.serverConfig(t)))
	a.Message("m", echo)
	path := shortTempDir(t) + "/tls.sock"
	l, err := agent.Listen("unix:" + path)
	require.NoError(t, err)
	serveOn(t, a, l)
	nc, err := net.Dial("unix", path)
	require.NoError(t, err)
	tc := tls.Client(nc, p.clientConfig(t, p.client))
	roundTrip(t, spoptest.NewClient(t, tc), "tls over unix")
	require.True(t, tc.ConnectionState().HandshakeComplete)
}

// shortTempDir returns a new folder with a short path (unix socket paths
// are limited to 108 bytes; t.TempDir's can be longer), removed at cleanup.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sf")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
