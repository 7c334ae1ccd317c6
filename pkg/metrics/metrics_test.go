package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"), // idle HTTP keep-alive conns of the scrape client
	)
}

func instrumented(t testing.TB) (*agent.Agent, string, string) {
	m := metrics.New()
	a := agent.New(agent.WithObserver(m), agent.WithMaxInFlight(256))
	a.Message("check-request", func(ctx context.Context, msg *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	a.Message("panics", func(context.Context, *agent.Message, *agent.Actions) error { panic("on purpose") })
	m.ObserveAgent(a)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = a.Serve(l) }()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(func() {
		srv.Close()
		_ = a.Close()
	})
	return a, l.Addr().String(), srv.URL
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// value returns the value of the sample line that starts with series.
func value(t *testing.T, text, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	require.NotNil(t, m, "no sample %s in:\n%s", series, text)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func TestExactCounts(t *testing.T) {
	a, addr, url := instrumented(t)
	c := spoptest.Dial(t, addr)
	c.Hello("pipelining", 16380)
	const n = 1000
	go func() {
		for i := range n {
			c.Notify(uint64(i), 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{spoptest.A("i", codec.Int64(int64(i)))}})
		}
		for i := range 3 {
			c.Notify(uint64(n+i), 1, spoptest.Msg{Name: "panics"})
		}
		c.Notify(9999, 1, spoptest.Msg{Name: "unknown"})
	}()
	for range n + 4 {
		c.ReadAck()
	}
	// A health check and a protocol error on two more connections.
	hc := spoptest.Dial(t, addr)
	hc.Write(codec.AppendHAProxyHello(nil, &codec.HAProxyHello{MaxFrameSize: 16380, RawCapabilities: []byte{}, Healthcheck: true}))
	hc.ReadFrame()
	hc.ExpectClosed()
	bad := spoptest.Dial(t, addr)
	bad.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	bad.ReadDisconnect()
	bad.ExpectClosed()
	require.Eventually(t, func() bool { return a.Connections() == 1 }, 5*time.Second, time.Millisecond)
	// A connection is counted closed once its goroutines are done.
	var text string
	require.Eventually(t, func() bool {
		text = scrape(t, url)
		return value(t, text, `spoe_connections_closed_total{reason="healthcheck"}`) == 1 &&
			value(t, text, `spoe_connections_closed_total{reason="protocol_error"}`) == 1
	}, 5*time.Second, 5*time.Millisecond)
	for series, want := range map[string]float64{
		`spoe_messages_total{message="check-request"}`:                      n,
		`spoe_messages_total{message="panics"}`:                             3,
		`spoe_handler_failures_total{kind="panic",message="panics"}`:        3,
		`spoe_handler_failures_total{kind="error",message="check-request"}`: 0,
		`spoe_handler_duration_seconds_count{message="check-request"}`:      n,
		`spoe_frames_received_total{type="NOTIFY"}`:                         n + 4,
		`spoe_frames_received_total{type="HAPROXY-HELLO"}`:                  2,
		`spoe_frames_sent_total{type="ACK"}`:                                n + 4,
		`spoe_frames_sent_total{type="AGENT-HELLO"}`:                        2,
		`spoe_frames_sent_total{type="AGENT-DISCONNECT"}`:                   1,
		`spoe_hellos_total`:                                      2,
		`spoe_healthchecks_total`:                                1,
		`spoe_connections_opened_total`:                          3,
		`spoe_connections_closed_total{reason="healthcheck"}`:    1,
		`spoe_connections_closed_total{reason="protocol_error"}`: 1,
		`spoe_disconnects_sent_total{status="3"}`:                1,
		`spoe_connections_open`:                                  1,
		`spoe_notifies_in_flight`:                                0,
		`spoe_notify_answer_seconds_count`:                       n + 4,
		`spoe_notifies_answered_total{result="ok"}`:              n + 1,
		`spoe_notifies_answered_total{result="panic"}`:           3,
		`spoe_notifies_answered_total{result="timeout"}`:         0,
	} {
		assert.Equal(t, want, value(t, text, series), series)
	}
	// The message HAProxy sent under a name with no handler is not handled
	// (no fallback), so it is counted nowhere but in the NOTIFY frames and
	// answers; without a fallback handler there is no _fallback series.
	assert.NotContains(t, text, `message="_fallback"`)

	// HAPROXY-DISCONNECT from the live connection.
	c.Write(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusNormal, "normal"))
	c.ReadDisconnect()
	c.ExpectClosed()
	require.Eventually(t, func() bool {
		text = scrape(t, url)
		return value(t, text, `spoe_connections_closed_total{reason="peer_disconnect"}`) == 1
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1.0, value(t, text, `spoe_disconnects_received_total{status="0"}`))
	assert.Equal(t, 1.0, value(t, text, `spoe_disconnects_sent_total{status="0"}`))
	assert.Equal(t, 1.0, value(t, text, `spoe_connections_closed_total{reason="peer_disconnect"}`))
}
