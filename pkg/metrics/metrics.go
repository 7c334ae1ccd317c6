// Package metrics exports an agent's activity as Prometheus metrics. It is a
// package of its own so that the core library does not depend on the
// Prometheus client.
//
//	m := metrics.New(prometheus.DefaultRegisterer, "check-request")
//	a := agent.New(agent.WithObserver(m))
//	m.ObserveAgent(a) // gauges sampled at scrape time
//
// Label values are resolved when the Metrics is built (message names are
// given to New), so recording an event allocates nothing.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
)

// Namespace prefixes every metric name.
const Namespace = "spoe"

// fallbackName labels messages handled by the fallback handler.
const fallbackName = "_fallback"

// Metrics is an observe.Observer that counts into Prometheus collectors.
type Metrics struct {
	reg prometheus.Registerer

	connsOpened prometheus.Counter
	connsClosed []prometheus.Counter // by observe.End
	hellos      prometheus.Counter
	healthcheck prometheus.Counter
	framesIn    [256]prometheus.Counter
	framesOut   [256]prometheus.Counter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	discIn      *prometheus.CounterVec
	discOut     *prometheus.CounterVec
	discInKnown [100]prometheus.Counter
	discOutKnwn [100]prometheus.Counter
	reassembled prometheus.Counter
	fragments   prometheus.Counter
	refused     []prometheus.Counter // by observe.Refusal
	tlsOK       prometheus.Counter
	tlsFailed   prometheus.Counter

	messages map[string]*messageMetrics // read-only after New
	other    *messageMetrics
}

var endLabels = func() []string {
	var l []string
	for _, e := range observe.Ends() {
		l = append(l, e.String())
	}
	return l
}()

type messageMetrics struct {
	total    prometheus.Counter
	duration prometheus.Observer
	errors   [6]prometheus.Counter // by error code - errCodeBase: 1..5 (0 unused)
}

// errCodeBase is subtracted from an error code (agent.ErrCodeHandler is
// 1001) to index errors and errorKinds.
const errCodeBase = agent.ErrCodeHandler - 1

// errorKinds names the error codes, by code - errCodeBase.
var errorKinds = [...]string{1: "error", 2: "panic", 3: "timeout", 4: "too_large", 5: "invalid_action"}

// New builds the collectors, registers them with reg and pre-resolves the
// labels of the given message names (the names handlers are registered
// for). Messages of other names are counted under "_fallback".
func New(reg prometheus.Registerer, messages ...string) *Metrics {
	m := &Metrics{reg: reg, messages: make(map[string]*messageMetrics, len(messages))}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m.connsOpened = counter("connections_opened_total", "Connections accepted.")
	closed := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "connections_closed_total",
		Help: "Connections ended, by how they ended."}, []string{"reason"})
	reg.MustRegister(closed)
	for _, l := range endLabels {
		m.connsClosed = append(m.connsClosed, closed.WithLabelValues(l))
	}
	m.hellos = counter("hellos_total", "HELLOs answered (health checks included).")
	m.healthcheck = counter("healthchecks_total", "Health-check HELLOs answered.")
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "frames_received_total",
		Help: "Frames received, by type."}, []string{"type"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "frames_sent_total",
		Help: "Frames queued for sending, by type."}, []string{"type"})
	reg.MustRegister(in, out)
	for t := range 256 {
		name := codec.FrameType(t).String()
		m.framesIn[t] = in.WithLabelValues(name)
		m.framesOut[t] = out.WithLabelValues(name)
	}
	m.bytesIn = counter("received_bytes_total", "Bytes of frames received (length prefixes included).")
	m.bytesOut = counter("sent_bytes_total", "Bytes of frames queued for sending (length prefixes included).")
	m.discIn = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "disconnects_received_total",
		Help: "HAPROXY-DISCONNECT frames received, by status code."}, []string{"status"})
	m.discOut = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "disconnects_sent_total",
		Help: "AGENT-DISCONNECT frames sent, by status code."}, []string{"status"})
	reg.MustRegister(m.discIn, m.discOut)
	for s := range m.discInKnown {
		if s <= 13 || s == 99 {
			m.discInKnown[s] = m.discIn.WithLabelValues(strconv.Itoa(s))
			m.discOutKnwn[s] = m.discOut.WithLabelValues(strconv.Itoa(s))
		}
	}
	m.reassembled = counter("notifies_reassembled_total", "Fragmented NOTIFYs put together.")
	m.fragments = counter("fragments_received_total", "Frames of fragmented NOTIFYs.")
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "connections_refused_total",
		Help: "Connections closed right after accept, by reason (not_allowed: source outside the allowlist; limit: connection limit reached)."},
		[]string{"reason"})
	reg.MustRegister(refused)
	for _, r := range observe.Refusals() {
		m.refused = append(m.refused, refused.WithLabelValues(r.String()))
	}
	tls := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tls_handshakes_total",
		Help: "TLS handshakes on accepted connections, by result (ok, failed)."}, []string{"result"})
	reg.MustRegister(tls)
	m.tlsOK, m.tlsFailed = tls.WithLabelValues("ok"), tls.WithLabelValues("failed")

	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "messages_total",
		Help: "SPOE messages handled, by name."}, []string{"message"})
	durs := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "handler_duration_seconds",
		Help:    "Time handlers took, by message.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}},
		[]string{"message"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "handler_failures_total",
		Help: "Handler failures, by message and kind (error, panic, timeout, too_large, invalid_action)."},
		[]string{"message", "kind"})
	reg.MustRegister(msgs, durs, errs)
	resolve := func(name string) *messageMetrics {
		mm := &messageMetrics{total: msgs.WithLabelValues(name), duration: durs.WithLabelValues(name)}
		for code := 1; code < len(errorKinds); code++ {
			mm.errors[code] = errs.WithLabelValues(name, errorKinds[code])
		}
		return mm
	}
	for _, name := range messages {
		m.messages[name] = resolve(name)
	}
	m.other = resolve(fallbackName)
	return m
}

// ObserveAgent registers gauges sampled from a at scrape time: open
// connections, NOTIFYs in flight, and the worker pool's running and waiting
// counts.
func (m *Metrics) ObserveAgent(a *agent.Agent) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
	}
	gauge("connections_open", "Connections exchanging frames.", func() float64 { return float64(a.Connections()) })
	gauge("notifies_in_flight", "NOTIFYs received and not yet answered.", func() float64 { return float64(a.InFlight()) })
	gauge("workers_running", "Pool workers running a handler.", func() float64 { r, _ := a.Workers(); return float64(r) })
	gauge("workers_waiting", "NOTIFYs waiting for a pool worker.", func() float64 { _, w := a.Workers(); return float64(w) })
}

// ConnOpened implements observe.Observer.
func (m *Metrics) ConnOpened() { m.connsOpened.Inc() }

// ConnClosed implements observe.Observer.
func (m *Metrics) ConnClosed(end observe.End, _ codec.Status) {
	if int(end) < len(m.connsClosed) {
		m.connsClosed[end].Inc()
	}
}

// Hello implements observe.Observer.
func (m *Metrics) Hello(healthcheck bool) {
	m.hellos.Inc()
	if healthcheck {
		m.healthcheck.Inc()
	}
}

// FrameIn implements observe.Observer.
func (m *Metrics) FrameIn(t codec.FrameType, length int) {
	m.framesIn[t].Inc()
	m.bytesIn.Add(float64(length + codec.LengthPrefixLen))
	if t == codec.FrameUnset {
		m.fragments.Inc()
	}
}

// FrameOut implements observe.Observer.
func (m *Metrics) FrameOut(t codec.FrameType, length int) {
	m.framesOut[t].Inc()
	m.bytesOut.Add(float64(length + codec.LengthPrefixLen))
}

// DisconnectReceived implements observe.Observer.
func (m *Metrics) DisconnectReceived(s codec.Status) { m.disconnect(m.discIn, &m.discInKnown, s) }

// DisconnectSent implements observe.Observer.
func (m *Metrics) DisconnectSent(s codec.Status) { m.disconnect(m.discOut, &m.discOutKnwn, s) }

func (m *Metrics) disconnect(v *prometheus.CounterVec, known *[100]prometheus.Counter, s codec.Status) {
	if s < 100 && known[s] != nil {
		known[s].Inc()
		return
	}
	v.WithLabelValues(strconv.FormatUint(uint64(s), 10)).Inc() // rare: agent-specific codes
}

// Reassembled implements observe.Observer.
func (m *Metrics) Reassembled(frames int) {
	m.reassembled.Inc()
	m.fragments.Inc() // the first frame, a NOTIFY without FIN
	_ = frames
}

// Message implements observe.Observer.
func (m *Metrics) Message(name string, took time.Duration, code int) {
	mm := m.other
	if name != "" {
		if x, ok := m.messages[name]; ok {
			mm = x
		}
	}
	mm.total.Inc()
	mm.duration.Observe(took.Seconds())
	if i := code - errCodeBase; i > 0 && i < len(mm.errors) {
		mm.errors[i].Inc()
	}
}

// ConnRefused implements observe.Observer.
func (m *Metrics) ConnRefused(why observe.Refusal) {
	if int(why) < len(m.refused) {
		m.refused[why].Inc()
	}
}

// TLSHandshake implements observe.Observer.
func (m *Metrics) TLSHandshake(err error) {
	if err != nil {
		m.tlsFailed.Inc()
		return
	}
	m.tlsOK.Inc()
}

var _ observe.Observer = (*Metrics)(nil)
