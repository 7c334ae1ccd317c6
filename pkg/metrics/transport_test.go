package metrics_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTransportCounts: TLS handshakes by result, and connections refused by
// reason (the connection limit, the allowlist), counted exactly.
func TestTransportCounts(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	server, client := ca.Issue(t, "agent"), ca.Issue(t, "haproxy")
	serverCfg := &tls.Config{
		Certificates: []tls.Certificate{server.TLS(t)},
		ClientCAs:    testpki.Pool(ca),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	clientCfg := &tls.Config{RootCAs: testpki.Pool(ca), ServerName: testpki.ServerName, Certificates: []tls.Certificate{client.TLS(t)}}

	m := metrics.New()
	a := agent.New(agent.WithObserver(m), agent.WithTLS(serverCfg), agent.WithMaxConnections(2),
		agent.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.1/32")))
	a.Message("m", func(context.Context, *agent.Message, *agent.Actions) error { return nil })
	m.ObserveAgent(a)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(func() {
		srv.Close()
		_ = a.Close()
		<-served
	})
	addr := l.Addr().String()

	// Two good clients fill the limit.
	var good []*spoptest.Client
	for range 2 {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientCfg)
		require.NoError(t, err)
		c := spoptest.NewClient(t, tc)
		c.Hello("pipelining", 16380)
		good = append(good, c)
	}
	// A third is refused at the limit.
	over := spoptest.Dial(t, addr)
	over.ExpectClosed()
	// A 127.0.0.2 source is outside the allowlist.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	outside := spoptest.NewClient(t, nc)
	outside.ExpectClosed()
	// Free a slot; then a plain-text client fails its handshake.
	require.NoError(t, good[0].NC.Close())
	require.Eventually(t, func() bool { return a.Connections() == 1 }, 5*time.Second, time.Millisecond)
	plain := spoptest.Dial(t, addr)
	plain.Write(spoptest.HelloFrame("pipelining", 16380))
	plain.ExpectClosed()

	var text string
	require.Eventually(t, func() bool {
		text = scrape(t, srv.URL)
		return value(t, text, `spoe_connections_refused_total{reason="limit"}`) == 1 &&
			value(t, text, `spoe_connections_refused_total{reason="not_allowed"}`) == 1 &&
			value(t, text, `spoe_tls_handshakes_total{result="failed"}`) == 1
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 2.0, value(t, text, `spoe_tls_handshakes_total{result="ok"}`))
	assert.Equal(t, 2.0, value(t, text, `spoe_connections_opened_total`))
}
