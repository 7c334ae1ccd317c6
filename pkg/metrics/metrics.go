// Package metrics exports an agent's activity as Prometheus metrics. It is a
// package of its own so that the core library does not depend on the
// Prometheus client.
//
// A Metrics is both the agent's observe.Observer and a prometheus.Collector
// that you register yourself, as with any collector of client_golang:
//
//	m := metrics.New()
//	a := agent.New(agent.WithObserver(m))
//	a.Message("check-request", checkRequest)
//	m.ObserveAgent(a) // message names, and gauges read at scrape time
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(m)
//
// Nothing is registered globally, so any number of agents can have metrics
// in one process: each on a registry of its own, or on one registry with
// const labels that tell them apart (WithConstLabels).
//
// A series exists for every value its labels can take in this agent: the
// frame types HAProxy sends and the agent sends, every way a connection
// ends, and for each message ObserveAgent found, its count and each kind of
// handler failure. Series whose label values only some agents or peers
// produce (a DISCONNECT status, a TLS handshake, a refused connection, the
// fallback handler, a frame type HAProxy does not send) appear when they
// first count something. Label values are resolved once, so recording an
// event allocates nothing.
//
// The metrics, with the default namespace "spoe":
//
//	spoe_connections_opened_total                   connections accepted
//	spoe_connections_closed_total{reason}           connections ended: normal, healthcheck, peer_disconnect, shutdown, protocol_error, io_error
//	spoe_connections_refused_total{reason}          closed at accept: not_allowed, limit
//	spoe_tls_handshakes_total{result}               ok, failed
//	spoe_hellos_total                               HELLOs answered (health checks included)
//	spoe_healthchecks_total                         health-check HELLOs answered
//	spoe_frames_received_total{type}                HAPROXY-HELLO, HAPROXY-DISCONNECT, NOTIFY, UNSET (a fragment), other
//	spoe_frames_sent_total{type}                    AGENT-HELLO, AGENT-DISCONNECT, ACK
//	spoe_received_bytes_total                       bytes of frames received
//	spoe_sent_bytes_total                           bytes of frames queued for sending
//	spoe_disconnects_received_total{status}         HAPROXY-DISCONNECT frames, by status code
//	spoe_disconnects_sent_total{status}             AGENT-DISCONNECT frames, by status code
//	spoe_notifies_reassembled_total                 fragmented NOTIFYs put together
//	spoe_fragments_received_total                   frames of fragmented NOTIFYs
//	spoe_messages_total{message}                    messages handled
//	spoe_handler_duration_seconds{message}          histogram: time handlers took
//	spoe_handler_failures_total{message,kind}       error, panic, timeout
//	spoe_notify_answer_seconds                      histogram: NOTIFY read to ACK handed for writing
//	spoe_notifies_answered_total{result}            ok, error, panic, timeout, too_large, invalid_action
//	spoe_connections_open                           gauge (ObserveAgent)
//	spoe_notifies_in_flight                         gauge (ObserveAgent)
//	spoe_workers_running                            gauge (ObserveAgent)
//	spoe_workers_waiting                            gauge (ObserveAgent)
//	spoe_build_info{go_version,version}             1; version is spoe-forge's module version
//
// spoe_notify_answer_seconds is the figure to compare with HAProxy's
// "timeout processing": an agent whose answers come near it has NOTIFYs
// that HAProxy gives up on.
package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
)

// DefaultNamespace prefixes every metric name unless WithNamespace says
// otherwise.
const DefaultNamespace = "spoe"

// defaultBuckets are the upper bounds, in seconds, of the histograms'
// buckets unless WithBuckets says otherwise.
var defaultBuckets = [...]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// Option configures a Metrics.
type Option func(*options)

type options struct {
	namespace string
	labels    prometheus.Labels
	buckets   []float64
}

// WithNamespace sets the prefix of every metric name ("spoe" by default;
// "" for none).
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithConstLabels adds labels with fixed values to every metric, to tell
// apart the agents whose Metrics share a registry (say, {"agent": "auth"}).
func WithConstLabels(l prometheus.Labels) Option {
	return func(o *options) {
		o.labels = make(prometheus.Labels, len(l))
		for k, v := range l {
			o.labels[k] = v
		}
	}
}

// WithBuckets sets the upper bounds, in seconds, of the buckets of both
// histograms (handler durations and NOTIFY answer times). They must be in
// increasing order: New panics otherwise, as prometheus.NewHistogram does.
// The default bounds run from 50µs to 2.5s (50µs, 100µs, 250µs, 500µs, 1ms,
// ... 1s, 2.5s), around the 200ms default handler timeout and the usual
// "timeout processing".
func WithBuckets(b []float64) Option {
	return func(o *options) { o.buckets = append([]float64(nil), b...) }
}

// fallbackName labels messages handled by the fallback handler.
const fallbackName = "_fallback"

// Metrics is an observe.Observer that counts into Prometheus metrics, and
// the prometheus.Collector that exports them. One Metrics observes one
// agent.
type Metrics struct {
	opts       options
	collectors []prometheus.Collector // the vectors, for Describe and Collect

	connsOpened prometheus.Counter
	connsClosed []prometheus.Counter // by observe.End
	refused     []lazyCounter        // by observe.Refusal
	tlsOK       lazyCounter
	tlsFailed   lazyCounter
	hellos      prometheus.Counter
	healthcheck prometheus.Counter
	framesIn    [256]prometheus.Counter // nil for the types HAProxy does not send
	framesInEtc lazyCounter             // those
	framesOut   [256]prometheus.Counter // nil for the types the agent does not send
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	discIn      statusCounters
	discOut     statusCounters
	reassembled prometheus.Counter
	fragments   prometheus.Counter
	answerTime  prometheus.Observer
	answered    []prometheus.Counter // by outcome: 0 ok, then failureKinds
	answeredEtc lazyCounter          // an error code package spoe does not define

	// Per message. messages is copied on write: names are added when
	// ObserveAgent reads them, or when a message has its first event.
	msgTotal   *prometheus.CounterVec
	msgTime    *prometheus.HistogramVec
	msgFailed  *prometheus.CounterVec
	messages   atomic.Pointer[map[string]*messageMetrics]
	messagesMu sync.Mutex
	fallback   atomic.Pointer[messageMetrics]

	// Sampled at scrape time.
	agent     atomic.Pointer[agent.Agent]
	gauges    [4]*prometheus.Desc
	buildInfo prometheus.Metric
}

type messageMetrics struct {
	total    prometheus.Counter
	duration prometheus.Observer
	failures [len(handlerFailures)]prometheus.Counter
}

// failureKind names an error code in labels.
type failureKind struct {
	code int
	name string
}

// handlerFailures are the codes a single handler's run ends with
// (observe.Observer's Message event).
var handlerFailures = [...]failureKind{
	{spoe.ErrCodeHandler, "error"},
	{spoe.ErrCodePanic, "panic"},
	{spoe.ErrCodeTimeout, "timeout"},
}

// answerFailures are the codes a NOTIFY's ACK carries (Answered): a
// handler's, or one of the whole NOTIFY.
var answerFailures = [...]failureKind{
	{spoe.ErrCodeHandler, "error"},
	{spoe.ErrCodePanic, "panic"},
	{spoe.ErrCodeTimeout, "timeout"},
	{spoe.ErrCodeTooLarge, "too_large"},
	{spoe.ErrCodeAction, "invalid_action"},
}

// New returns a Metrics configured by opts. Install it with
// agent.WithObserver, call ObserveAgent once the handlers are registered,
// and register it with your prometheus.Registerer.
func New(opts ...Option) *Metrics {
	o := options{namespace: DefaultNamespace, buckets: append([]float64(nil), defaultBuckets[:]...)}
	for _, opt := range opts {
		opt(&o)
	}
	m := &Metrics{opts: o}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: o.namespace, Name: name, Help: help, ConstLabels: o.labels})
		m.collectors = append(m.collectors, c)
		return c
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: o.namespace, Name: name, Help: help, ConstLabels: o.labels}, labels)
		m.collectors = append(m.collectors, v)
		return v
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.namespace, Name: name, Help: help,
			ConstLabels: o.labels, Buckets: o.buckets}, labels)
		m.collectors = append(m.collectors, v)
		return v
	}

	m.connsOpened = counter("connections_opened_total", "Connections accepted.")
	closed := vec("connections_closed_total", "Connections ended, by how they ended.", "reason")
	for _, e := range observe.Ends() {
		m.connsClosed = append(m.connsClosed, closed.WithLabelValues(e.String()))
	}
	refused := vec("connections_refused_total",
		"Connections closed right after accept, by reason (not_allowed: source outside the allowlist; limit: connection limit reached).", "reason")
	for _, r := range observe.Refusals() {
		m.refused = append(m.refused, lazyCounter{vec: refused, values: []string{r.String()}})
	}
	tls := vec("tls_handshakes_total", "TLS handshakes on accepted connections, by result (ok, failed).", "result")
	m.tlsOK = lazyCounter{vec: tls, values: []string{"ok"}}
	m.tlsFailed = lazyCounter{vec: tls, values: []string{"failed"}}
	m.hellos = counter("hellos_total", "HELLOs answered (health checks included).")
	m.healthcheck = counter("healthchecks_total", "Health-check HELLOs answered.")

	in := vec("frames_received_total", "Frames received, by type (other: a type HAProxy does not send).", "type")
	for _, t := range []codec.FrameType{codec.FrameHAProxyHello, codec.FrameHAProxyDisconnect, codec.FrameNotify, codec.FrameUnset} {
		m.framesIn[t] = in.WithLabelValues(t.String())
	}
	m.framesInEtc = lazyCounter{vec: in, values: []string{"other"}}
	out := vec("frames_sent_total", "Frames queued for sending, by type.", "type")
	for _, t := range []codec.FrameType{codec.FrameAgentHello, codec.FrameAgentDisconnect, codec.FrameAck} {
		m.framesOut[t] = out.WithLabelValues(t.String())
	}
	m.bytesIn = counter("received_bytes_total", "Bytes of frames received (length prefixes included).")
	m.bytesOut = counter("sent_bytes_total", "Bytes of frames queued for sending (length prefixes included).")
	m.discIn.init(vec("disconnects_received_total", "HAPROXY-DISCONNECT frames received, by status code.", "status"))
	m.discOut.init(vec("disconnects_sent_total", "AGENT-DISCONNECT frames sent, by status code.", "status"))
	m.reassembled = counter("notifies_reassembled_total", "Fragmented NOTIFYs put together.")
	m.fragments = counter("fragments_received_total", "Frames of fragmented NOTIFYs.")

	m.answerTime = histogram("notify_answer_seconds",
		"Time from a NOTIFY's read to its ACK handed to the connection for writing, whoever answered it; compare with HAProxy's timeout processing.").
		WithLabelValues()
	answered := vec("notifies_answered_total",
		"NOTIFYs answered, by the error code of their ACK (ok, error, panic, timeout, too_large, invalid_action).", "result")
	m.answered = append(m.answered, answered.WithLabelValues("ok"))
	for _, k := range answerFailures {
		m.answered = append(m.answered, answered.WithLabelValues(k.name))
	}
	m.answeredEtc = lazyCounter{vec: answered, values: []string{"other"}}

	m.msgTotal = vec("messages_total", "SPOE messages handled, by name (_fallback: by the fallback handler).", "message")
	m.msgTime = histogram("handler_duration_seconds", "Time handlers took, by message.", "message")
	m.msgFailed = vec("handler_failures_total", "Handler failures, by message and kind (error, panic, timeout).", "message", "kind")
	m.messages.Store(&map[string]*messageMetrics{})

	gauge := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.namespace, "", name), help, nil, o.labels)
	}
	m.gauges = [...]*prometheus.Desc{
		gauge("connections_open", "Connections exchanging frames."),
		gauge("notifies_in_flight", "NOTIFYs received and not yet answered."),
		gauge("workers_running", "Pool workers running a handler."),
		gauge("workers_waiting", "NOTIFYs waiting for a pool worker."),
	}
	info, _ := debug.ReadBuildInfo()
	m.buildInfo = prometheus.MustNewConstMetric(
		prometheus.NewDesc(prometheus.BuildFQName(o.namespace, "", "build_info"),
			"Always 1; its labels are the Go version the program was built with and spoe-forge's module version.",
			[]string{"go_version", "version"}, o.labels),
		prometheus.GaugeValue, 1, runtime.Version(), moduleVersion(info))
	return m
}

// modulePath is spoe-forge's module path.
const modulePath = "github.com/spoe-forge/spoe-forge"

// moduleVersion returns spoe-forge's version in the program's build info:
// "(devel)" when it is the main module or replaced by a directory, and
// "unknown" without build info.
func moduleVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "unknown"
	}
	if info.Main.Path == modulePath {
		return or(info.Main.Version, "(devel)")
	}
	for _, d := range info.Deps {
		if d.Path != modulePath {
			continue
		}
		if d.Replace != nil {
			return or(d.Replace.Version, "(devel)")
		}
		return or(d.Version, "(devel)")
	}
	return "unknown"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ObserveAgent makes m export a's gauges (open connections, NOTIFYs in
// flight, the worker pool's running and waiting counts), read at scrape
// time, and a series for each message a has a handler for (a's
// MessageNames), so that they show 0 before their first message. Call it
// once the handlers are registered; messages registered later get their
// series at their first event. It panics if m already observes another
// agent: use one Metrics per agent.
func (m *Metrics) ObserveAgent(a *agent.Agent) {
	if !m.agent.CompareAndSwap(nil, a) && m.agent.Load() != a {
		panic("metrics: ObserveAgent with a second agent; use one Metrics per agent (WithConstLabels tells them apart on one registry)")
	}
	for _, name := range a.MessageNames() {
		m.message(name)
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
	for _, d := range m.gauges {
		ch <- d
	}
	ch <- m.buildInfo.Desc()
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
	if a := m.agent.Load(); a != nil {
		running, waiting := a.Workers()
		for i, v := range [...]int{a.Connections(), a.InFlight(), running, waiting} {
			ch <- prometheus.MustNewConstMetric(m.gauges[i], prometheus.GaugeValue, float64(v))
		}
	}
	ch <- m.buildInfo
}

// message returns the metrics of a message name, creating them at the first
// event of the name. The names are those handlers are registered for, so
// there are few, and after the first event a lookup does not lock.
func (m *Metrics) message(name string) *messageMetrics {
	if mm, ok := (*m.messages.Load())[name]; ok {
		return mm
	}
	m.messagesMu.Lock()
	defer m.messagesMu.Unlock()
	old := *m.messages.Load()
	if mm, ok := old[name]; ok {
		return mm
	}
	mm := m.newMessage(name)
	next := make(map[string]*messageMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = mm
	m.messages.Store(&next)
	return mm
}

func (m *Metrics) newMessage(label string) *messageMetrics {
	mm := &messageMetrics{total: m.msgTotal.WithLabelValues(label), duration: m.msgTime.WithLabelValues(label)}
	for i, k := range handlerFailures {
		mm.failures[i] = m.msgFailed.WithLabelValues(label, k.name)
	}
	return mm
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
	if c := m.framesIn[t]; c != nil {
		c.Inc()
	} else {
		m.framesInEtc.inc()
	}
	m.bytesIn.Add(float64(length + codec.LengthPrefixLen))
	if t == codec.FrameUnset {
		m.fragments.Inc()
	}
}

// FrameOut implements observe.Observer.
func (m *Metrics) FrameOut(t codec.FrameType, length int) {
	if c := m.framesOut[t]; c != nil {
		c.Inc()
	}
	m.bytesOut.Add(float64(length + codec.LengthPrefixLen))
}

// DisconnectReceived implements observe.Observer.
func (m *Metrics) DisconnectReceived(s codec.Status) { m.discIn.inc(s) }

// DisconnectSent implements observe.Observer.
func (m *Metrics) DisconnectSent(s codec.Status) { m.discOut.inc(s) }

// Reassembled implements observe.Observer.
func (m *Metrics) Reassembled(int) {
	m.reassembled.Inc()
	m.fragments.Inc() // the first frame, a NOTIFY without FIN
}

// Message implements observe.Observer.
func (m *Metrics) Message(name string, took time.Duration, code int) {
	var mm *messageMetrics
	if name == "" {
		mm = m.fallback.Load()
		if mm == nil {
			m.fallback.CompareAndSwap(nil, m.newMessage(fallbackName))
			mm = m.fallback.Load()
		}
	} else {
		mm = m.message(name)
	}
	mm.total.Inc()
	mm.duration.Observe(took.Seconds())
	if code != 0 {
		for i, k := range handlerFailures {
			if k.code == code {
				mm.failures[i].Inc()
			}
		}
	}
}

// Answered implements observe.Observer.
func (m *Metrics) Answered(took time.Duration, code int) {
	m.answerTime.Observe(took.Seconds())
	if code == 0 {
		m.answered[0].Inc()
		return
	}
	for i, k := range answerFailures {
		if k.code == code {
			m.answered[1+i].Inc()
			return
		}
	}
	m.answeredEtc.inc()
}

// ConnRefused implements observe.Observer.
func (m *Metrics) ConnRefused(why observe.Refusal) {
	if int(why) < len(m.refused) {
		m.refused[why].inc()
	}
}

// TLSHandshake implements observe.Observer.
func (m *Metrics) TLSHandshake(err error) {
	if err != nil {
		m.tlsFailed.inc()
		return
	}
	m.tlsOK.inc()
}

// lazyCounter is the child of a vector for label values that not every
// agent or peer produces: it is created, and so appears in the scrape, at
// its first increment.
type lazyCounter struct {
	vec    *prometheus.CounterVec
	values []string
	once   sync.Once
	c      prometheus.Counter
}

func (l *lazyCounter) inc() {
	l.once.Do(l.create)
	l.c.Inc()
}

func (l *lazyCounter) create() { l.c = l.vec.WithLabelValues(l.values...) }

// statusCounters counts DISCONNECT frames by status: the statuses SPOP
// defines, and the agent-specific ones up to maxStatus, each with a child
// made at its first frame; larger statuses share "other".
type statusCounters struct {
	known [maxStatus + 1]lazyCounter
	other lazyCounter
}

// maxStatus is the largest status counted under its own label.
const maxStatus = 255

func (s *statusCounters) init(v *prometheus.CounterVec) {
	for i := range s.known {
		s.known[i] = lazyCounter{vec: v, values: []string{strconv.Itoa(i)}}
	}
	s.other = lazyCounter{vec: v, values: []string{"other"}}
}

func (s *statusCounters) inc(st codec.Status) {
	if st <= maxStatus {
		s.known[st].inc()
		return
	}
	s.other.inc()
}

var (
	_ observe.Observer     = (*Metrics)(nil)
	_ prometheus.Collector = (*Metrics)(nil)
)
