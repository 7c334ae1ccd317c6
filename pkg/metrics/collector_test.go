package metrics_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// series is one sample of a gathered metric: its family and its labels.
type series struct {
	family string
	labels map[string]string
	value  float64 // a counter's or gauge's value, a histogram's count
}

func gather(t *testing.T, g prometheus.Gatherer) []series {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var out []series
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := series{family: mf.GetName(), labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.value = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out = append(out, s)
		}
	}
	return out
}

// find returns the value of the series of family whose labels include
// labels (name, value pairs), and whether there is one.
func find(all []series, family string, labels ...string) (float64, bool) {
	for _, s := range all {
		if s.family != family {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func histogramOf(t *testing.T, g prometheus.Gatherer, family string) *dto.Histogram {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == family {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no %s", family)
	return nil
}

// served returns an agent with a check-request handler and m installed,
// served in process, and a client connected to it.
func served(t *testing.T, m *metrics.Metrics, opts ...agent.Option) (*agent.Agent, *spoetest.Client) {
	t.Helper()
	a := agent.New(append([]agent.Option{agent.WithObserver(m)}, opts...)...)
	a.Message("check-request", func(ctx context.Context, msg *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	m.ObserveAgent(a)
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := srv.Client()
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return a, c
}

func notify(t *testing.T, c *spoetest.Client, n int, name string) {
	t.Helper()
	for range n {
		_, err := c.Notify(spoetest.NewMessage(name))
		require.NoError(t, err)
	}
}

// TestTwoAgentsInOneProcess: two agents with metrics in one process, as two
// tests or two agents of one program have them: on one registry with const
// labels that tell them apart, and each on a registry of its own. Nothing
// is registered globally, so nothing panics, and each counts only its own
// agent's messages.
func TestTwoAgentsInOneProcess(t *testing.T) {
	shared := prometheus.NewRegistry()
	ma := metrics.New(metrics.WithConstLabels(prometheus.Labels{"agent": "a"}))
	mb := metrics.New(metrics.WithConstLabels(prometheus.Labels{"agent": "b"}))
	_, ca := served(t, ma)
	_, cb := served(t, mb)
	require.NotPanics(t, func() { shared.MustRegister(ma, mb) })

	own1, own2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	m1, m2 := metrics.New(), metrics.New()
	_, c1 := served(t, m1)
	_, c2 := served(t, m2)
	require.NotPanics(t, func() {
		own1.MustRegister(m1)
		own2.MustRegister(m2)
	})

	// The same const labels twice on one registry is an error to handle,
	// as with any two collectors of the same metrics.
	dup := metrics.New(metrics.WithConstLabels(prometheus.Labels{"agent": "a"}))
	assert.Error(t, shared.Register(dup))

	notify(t, ca, 3, "check-request")
	notify(t, cb, 5, "check-request")
	notify(t, c1, 7, "check-request")
	notify(t, c2, 11, "check-request")

	all := gather(t, shared)
	for agentName, want := range map[string]float64{"a": 3, "b": 5} {
		v, ok := find(all, "spoe_messages_total", "agent", agentName, "message", "check-request")
		require.True(t, ok, "agent %s", agentName)
		assert.Equal(t, want, v, "agent %s", agentName)
		v, _ = find(all, "spoe_notify_answer_seconds", "agent", agentName)
		assert.Equal(t, want, v, "agent %s answers", agentName)
		v, ok = find(all, "spoe_connections_open", "agent", agentName)
		require.True(t, ok)
		assert.Equal(t, 1.0, v)
	}
	for reg, want := range map[*prometheus.Registry]float64{own1: 7, own2: 11} {
		v, ok := find(gather(t, reg), "spoe_messages_total", "message", "check-request")
		require.True(t, ok)
		assert.Equal(t, want, v)
	}
}

// TestNoImpossibleSeries: before anything happens, the series that exist
// are those whose label values this agent can produce (frame types HAProxy
// and the agent send, its message names, the failure kinds of a handler);
// the others (another frame type, a DISCONNECT status, TLS, refusals, the
// fallback handler) appear when they first count.
func TestNoImpossibleSeries(t *testing.T) {
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	a := agent.New(agent.WithObserver(m))
	a.Message("check-request", func(context.Context, *agent.Message, *agent.Actions) error { return nil })
	m.ObserveAgent(a)

	var ends []string
	for _, e := range observe.Ends() {
		ends = append(ends, e.String())
	}
	allowed := map[string]map[string][]string{ // family -> label -> values
		"spoe_frames_received_total":      {"type": {"HAPROXY-HELLO", "HAPROXY-DISCONNECT", "NOTIFY", "UNSET"}},
		"spoe_frames_sent_total":          {"type": {"AGENT-HELLO", "AGENT-DISCONNECT", "ACK"}},
		"spoe_connections_closed_total":   {"reason": ends},
		"spoe_messages_total":             {"message": {"check-request"}},
		"spoe_handler_duration_seconds":   {"message": {"check-request"}},
		"spoe_handler_failures_total":     {"message": {"check-request"}, "kind": {"error", "panic", "timeout"}},
		"spoe_notifies_answered_total":    {"result": {"ok", "error", "panic", "timeout", "too_large", "invalid_action"}},
		"spoe_build_info":                 {"go_version": {runtime.Version()}, "version": nil},
		"spoe_tls_handshakes_total":       {},
		"spoe_connections_refused_total":  {},
		"spoe_disconnects_received_total": {},
		"spoe_disconnects_sent_total":     {},
	}
	all := gather(t, reg)
	families := map[string]int{}
	for _, s := range all {
		families[s.family]++
		for k, v := range s.labels {
			assert.NotContains(t, v, "FRAME(", "%s{%s=%q}", s.family, k, v)
			want, listed := allowed[s.family]
			if !listed {
				t.Errorf("%s has labels %v: not expected", s.family, s.labels)
				continue
			}
			values, ok := want[k]
			require.True(t, ok, "%s: label %s", s.family, k)
			if values != nil {
				assert.Contains(t, values, v, "%s{%s}", s.family, k)
			}
		}
		if s.family != "spoe_build_info" {
			assert.Zero(t, s.value, "%s %v before any connection", s.family, s.labels)
		}
	}
	// Every possible value has its series from the start.
	for family, labels := range allowed {
		n := 1
		for k, values := range labels {
			if k != "message" && values != nil {
				n *= len(values)
			}
		}
		if len(labels) == 0 {
			n = 0 // appear at their first event
		}
		assert.Equal(t, n, families[family], "series of %s", family)
	}
	v, ok := find(all, "spoe_build_info", "go_version", runtime.Version())
	require.True(t, ok)
	assert.Equal(t, 1.0, v)

	// A frame of a type HAProxy does not send, on a stream (ignored), and a
	// HAPROXY-DISCONNECT: their series appear with their first count.
	c := listen(t, a)
	c.Hello("pipelining", 16380)
	odd, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameType(42), Flags: codec.FlagFin, StreamID: 1, FrameID: 1})
	_, err := codec.FinishFrame(odd, start, codec.MaxFrameLen)
	require.NoError(t, err)
	c.Write(odd)
	c.Notify(1, 2, spoptest.Msg{Name: "check-request"})
	c.ReadAck()
	c.Write(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusNormal, "bye"))
	c.ReadDisconnect()
	c.ExpectClosed()
	require.Eventually(t, func() bool {
		v, _ := find(gather(t, reg), "spoe_connections_closed_total", "reason", "peer_disconnect")
		return v == 1
	}, 5*time.Second, 5*time.Millisecond)
	all = gather(t, reg)
	for _, want := range []struct {
		family, label, value string
	}{
		{"spoe_frames_received_total", "type", "other"},
		{"spoe_disconnects_received_total", "status", "0"},
		{"spoe_disconnects_sent_total", "status", "0"},
	} {
		v, ok := find(all, want.family, want.label, want.value)
		require.True(t, ok, "%s{%s=%q}", want.family, want.label, want.value)
		assert.Equal(t, 1.0, v, "%s{%s=%q}", want.family, want.label, want.value)
	}
	for _, s := range all {
		if s.family == "spoe_tls_handshakes_total" || s.family == "spoe_connections_refused_total" {
			t.Errorf("%s %v: no TLS and no refusal happened", s.family, s.labels)
		}
		if s.labels["message"] == "_fallback" {
			t.Errorf("%s %v: the agent has no fallback handler", s.family, s.labels)
		}
	}
}

// listen serves a on a loopback listener and returns a raw client.
func listen(t *testing.T, a *agent.Agent) *spoptest.Client {
	t.Helper()
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { _ = srv.Close() })
	return spoptest.Dial(t, srv.Addr)
}

// TestAnswerTimes: every ACK is timed from its NOTIFY's read, whoever
// answers it, and counted by the error code it carries; the NOTIFYs whose
// handler outlives the deadline are answered by the agent at the deadline,
// no sooner, and counted as timeouts; those whose actions do not fit or are
// invalid, as too_large and invalid_action.
func TestAnswerTimes(t *testing.T) {
	const timeout = 60 * time.Millisecond
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	a := agent.New(agent.WithObserver(m), agent.WithTimeout(timeout), agent.WithMaxFrameSize(1024))
	a.Message("fast", func(context.Context, *agent.Message, *agent.Actions) error { return nil })
	a.Message("big", func(_ context.Context, _ *agent.Message, act *agent.Actions) error {
		act.SetString(agent.ScopeTransaction, "big", strings.Repeat("x", 2000)) // over one 1024-byte frame
		return nil
	})
	a.Message("bad", func(_ context.Context, _ *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "", true) // no name: an invalid action
		return nil
	})
	m.ObserveAgent(a)
	// Registered after ObserveAgent (before Serve, as it must be): its
	// series come with its first event.
	a.Message("slow", slowAgentCheck)
	_, ok := find(gather(t, reg), "spoe_messages_total", "message", "slow")
	require.False(t, ok)
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := srv.Client()
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	notify(t, c, 3, "fast")
	notify(t, c, 2, "slow")
	notify(t, c, 1, "big")
	notify(t, c, 1, "bad")

	// Each Answered comes before its ACK leaves: the counts are complete
	// once the client has its ACKs.
	h := histogramOf(t, reg, "spoe_notify_answer_seconds")
	require.Equal(t, uint64(7), h.GetSampleCount())
	// The two answered at the deadline took at least the timeout: the
	// clock starts at the read, and the deadline is the read plus the
	// timeout.
	assert.GreaterOrEqual(t, h.GetSampleSum(), 2*timeout.Seconds())
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() < timeout.Seconds() {
			assert.LessOrEqual(t, b.GetCumulativeCount(), uint64(5), "le=%v: only the fast ones", b.GetUpperBound())
		}
	}
	all := gather(t, reg)
	for result, want := range map[string]float64{"ok": 3, "timeout": 2, "too_large": 1, "invalid_action": 1, "error": 0} {
		v, ok := find(all, "spoe_notifies_answered_total", "result", result)
		require.True(t, ok, result)
		assert.Equal(t, want, v, result)
	}
	// The slow handlers' own runs are counted when they return, after their
	// context ends.
	require.Eventually(t, func() bool {
		v, _ := find(gather(t, reg), "spoe_handler_failures_total", "message", "slow", "kind", "timeout")
		return v == 2
	}, 5*time.Second, 5*time.Millisecond)
}

// slowAgentCheck waits for its context to end: the agent answers its
// NOTIFY at the deadline.
func slowAgentCheck(ctx context.Context, _ *agent.Message, _ *agent.Actions) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestOptions(t *testing.T) {
	labels := prometheus.Labels{"agent": "auth"}
	m := metrics.New(metrics.WithNamespace("edge"), metrics.WithConstLabels(labels),
		metrics.WithBuckets([]float64{0.001, 0.01, 0.1}))
	labels["agent"] = "changed later" // New kept its own copy
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	_, c := served(t, m)
	notify(t, c, 2, "check-request")

	all := gather(t, reg)
	v, ok := find(all, "edge_messages_total", "agent", "auth", "message", "check-request")
	require.True(t, ok)
	assert.Equal(t, 2.0, v)
	for _, s := range all {
		assert.True(t, strings.HasPrefix(s.family, "edge_"), s.family)
		assert.Equal(t, "auth", s.labels["agent"], s.family)
	}
	var bounds []float64
	for _, b := range histogramOf(t, reg, "edge_notify_answer_seconds").GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	assert.Equal(t, []float64{0.001, 0.01, 0.1}, bounds)

	bare := metrics.New(metrics.WithNamespace(""))
	reg = prometheus.NewRegistry()
	reg.MustRegister(bare)
	_, ok = find(gather(t, reg), "frames_received_total", "type", "NOTIFY")
	assert.True(t, ok)
}

// TestObserveAgentOnce: a Metrics observes one agent; a second is a
// mistake that would mix two agents' numbers, and panics.
func TestObserveAgentOnce(t *testing.T) {
	m := metrics.New()
	a, b := agent.New(), agent.New()
	m.ObserveAgent(a)
	assert.NotPanics(t, func() { m.ObserveAgent(a) })
	assert.PanicsWithValue(t,
		"metrics: ObserveAgent with a second agent; use one Metrics per agent (WithConstLabels tells them apart on one registry)",
		func() { m.ObserveAgent(b) })
}
