package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"go.uber.org/zap"
)

// Option configures an Agent. A zero value means "the default". A value
// that cannot work (a negative size, count or duration, a max frame size
// below 256, an invalid error variable or network) is not replaced by the
// default: Serve, ListenAndServe and Run refuse to start and return an
// error that matches ErrBadOption and names the option. WithLameDuck is the
// exception: a negative period (NoLameDuck) turns it off.
type Option func(*config)

// ErrBadOption is matched (errors.Is) by the error with which Serve,
// ListenAndServe and Run refuse an option value that cannot work; the error
// names the option and the value. Every bad value is reported at once.
var ErrBadOption = errors.New("agent: bad option")

type config struct {
	logger          *zap.Logger
	maxFrameSize    uint32
	maxInFlight     int
	workers         int
	maxMessageSize  int
	timeout         time.Duration
	helloTimeout    time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	lameDuck        time.Duration
	maxConns        int
	errorVar        Var
	errorVarSet     bool
	async           bool
	noPipelining    bool
	noFragmentation bool
	base            context.Context
	observer        observe.Observer
	tr              transportConfig // transport.go
}

// Defaults.
const (
	// DefaultMaxFrameSize bounds the max-frame-size the agent answers:
	// min(HAProxy's offer, this). HAProxy offers tune.bufsize - 4 (16380 by
	// default, 65532 with tune.bufsize 65536), so by default the agent
	// answers the offer. Read buffers grow only as frames need them.
	DefaultMaxFrameSize = 64<<10 - 4
	// DefaultMaxInFlight bounds unanswered NOTIFYs per connection (HAProxy
	// itself sends at most 20 with its defaults).
	DefaultMaxInFlight = 64
	// DefaultWorkers is the capacity of the handler pool.
	DefaultWorkers = 1024
	// DefaultTimeout is the per-NOTIFY deadline of handlers' contexts. It
	// must stay below HAProxy's "timeout processing" with room for queueing
	// and the network: the shipped configurations use 500 ms or more.
	DefaultTimeout = 200 * time.Millisecond
	// DefaultMaxMessageSize bounds a reassembled fragmented NOTIFY.
	DefaultMaxMessageSize = 1 << 20
	// DefaultHelloTimeout bounds the wait for HAProxy's HELLO.
	DefaultHelloTimeout = 5 * time.Second
	// DefaultWriteTimeout bounds every write to HAProxy.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultShutdownTimeout bounds Run's graceful drain.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultLameDuck is Run's lame-duck period (WithLameDuck): a little
	// over HAProxy's "check inter 5s" times the default "fall 3" of the
	// shipped configurations, so that HAProxy has marked the agent DOWN
	// before it stops listening.
	DefaultLameDuck = 16 * time.Second
)

// StatusLameDuck is the status of the AGENT-DISCONNECT with which an agent
// in its lame-duck period answers health checks (an agent-specific code:
// SPOP leaves 100 and above to agents).
const StatusLameDuck codec.Status = 100

// NoLameDuck, given to WithLameDuck, turns the lame-duck period off, for Run
// too.
const NoLameDuck time.Duration = -1

// WithLogger sets the logger; the default discards everything. The agent logs
// one line per connection that ends in error, handler errors and panics, and
// debug lines per connection.
func WithLogger(l *zap.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxFrameSize sets the largest max-frame-size the agent answers (at
// least 256; default 65532, which answers HAProxy's offer up to tune.bufsize
// 65536). Keep it at or above HAProxy's offer: below it, HAProxy 2.6/3.0
// encode events against the smallest size negotiated on each thread, so an
// event that races a connection's first HELLO can fail with error 259 even
// though fragmentation is on, and HAProxy 3.1+ fails every event larger
// than the answer. Frames up to the offer are accepted even above the
// answer (HAProxy 3.1.0 sends them), up to 65532 bytes.
func WithMaxFrameSize(n uint32) Option { return func(c *config) { c.maxFrameSize = n } }

// WithMaxInFlight bounds the NOTIFYs of one connection that are received and
// not yet answered; past it the agent stops reading that connection.
func WithMaxInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// WithWorkers sets the capacity of the worker pool that runs handlers, shared
// by all connections. Handlers that wait on I/O need more workers.
func WithWorkers(n int) Option { return func(c *config) { c.workers = n } }

// WithMaxMessageSize bounds a NOTIFY reassembled from fragments.
func WithMaxMessageSize(n int) Option { return func(c *config) { c.maxMessageSize = n } }

// WithTimeout sets the per-NOTIFY deadline (default 200 ms): handlers'
// contexts end then, and a NOTIFY whose handlers have not returned by then is
// answered at once with no actions but the error variable (ErrCodeTimeout);
// what its handlers do afterwards is dropped. The agent never answers after the
// deadline, because HAProxy 2.6/3.0 can take a late ACK for the next event of
// the same stream.
//
// Keep it below HAProxy's "timeout processing", with room for queueing and
// the network (half of it is a good start): a NOTIFY answered after that is
// an error for HAProxy ("set-on-error" 1) whatever the agent says.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithHelloTimeout bounds the wait for HAProxy's HELLO on a new connection.
func WithHelloTimeout(d time.Duration) Option { return func(c *config) { c.helloTimeout = d } }

// WithWriteTimeout bounds each write; a peer that stops reading loses its
// connection.
func WithWriteTimeout(d time.Duration) Option { return func(c *config) { c.writeTimeout = d } }

// WithIdleTimeout ends connections idle for d with AGENT-DISCONNECT status 2.
// Off by default: HAProxy manages its idle connections.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = d } }

// WithShutdownTimeout bounds Run's graceful drain after SIGTERM or SIGINT.
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) { c.shutdownTimeout = d }
}

// WithLameDuck sets the lame-duck period that precedes the drain of Run (on
// SIGTERM or SIGINT) and of Shutdown. During it the agent fails every
// health check of HAProxy's "option spop-check" (it answers an
// AGENT-DISCONNECT with StatusLameDuck instead of the AGENT-HELLO), so that
// HAProxy marks it DOWN and sends new work to the other agents of the
// backend, while it keeps serving every connection it has and accepting new
// ones (HAProxy may open one before it has marked the agent DOWN). Then it
// drains as Shutdown says.
//
// Make d a little longer than the "inter" times "fall" of the server's
// check ("check inter 5s", fall 3 by default: 15 s). Run uses
// DefaultLameDuck unless this option is given; Shutdown has no lame-duck
// period unless this option is given. NoLameDuck (any negative d) turns it
// off for both. The period is skipped when no health check was answered
// within d before the shutdown began: nobody watches the agent's health.
// It never outlasts Shutdown's context; Run gives Shutdown the lame-duck
// period plus the shutdown timeout.
func WithLameDuck(d time.Duration) Option { return func(c *config) { c.lameDuck = d } }

// WithMaxConnections limits concurrent connections; connections past it are
// closed at once. 0, the default, means no limit: HAProxy opens at least one
// connection per thread, and more under load.
func WithMaxConnections(n int) Option { return func(c *config) { c.maxConns = n } }

// WithErrorVar names a variable that is set, as an integer, when a handler
// fails: ErrCodeHandler (1001) it returned an error, ErrCodePanic (1002) it
// panicked, ErrCodeTimeout (1003) it missed its deadline (returned late, or
// with its context's error), ErrCodeTooLarge (1004) the actions did not fit
// in one frame, ErrCodeAction (1005) an action was invalid. The NOTIFY is
// acknowledged either way; the handler's own actions are kept after an
// error and dropped after a panic or a missed deadline.
//
// Name it apart from the variable of HAProxy's "option set-on-error", which
// HAProxy sets when the event fails on its side (1 to 5, 255, 256 and up:
// see the README's "Error variables"). The shipped configurations use
// WithErrorVar(ScopeTransaction, "agent_error") and "option set-on-error
// spoe_error". The name must not be empty or longer than 63 bytes (keep
// "<scope>.<var-prefix>.<name>" within that too) and the scope must be one
// of the five: Serve reports anything else as ErrBadOption.
func WithErrorVar(scope Scope, name string) Option {
	return func(c *config) { c.errorVar, c.errorVarSet = Var{Scope: scope, Name: name}, true }
}

// WithAsync announces the "async" capability when HAProxy (2.6/3.0) offers
// it: an ACK whose connection died is then sent on another connection of the
// same HAProxy engine. Off by default; replying on the same connection is
// valid everywhere.
func WithAsync(on bool) Option { return func(c *config) { c.async = on } }

// WithPipelining turns the "pipelining" capability off or on (on by
// default). Without it HAProxy sends one NOTIFY at a time per connection.
func WithPipelining(on bool) Option { return func(c *config) { c.noPipelining = !on } }

// WithFragmentation turns the "fragmentation" capability off or on (on by
// default): HAProxy 2.6/3.0 then split events larger than the frame size
// instead of failing them (with a reconnect storm). HAProxy 3.1+ ignores it.
func WithFragmentation(on bool) Option { return func(c *config) { c.noFragmentation = !on } }

// WithObserver reports the agent's events (connections, frames, messages,
// DISCONNECTs) to o; package metrics provides a Prometheus Observer.
func WithObserver(o observe.Observer) Option { return func(c *config) { c.observer = o } }

// WithBaseContext sets the context handlers' contexts derive their values
// from; cancelling it cancels every handler.
func WithBaseContext(ctx context.Context) Option { return func(c *config) { c.base = ctx } }

// check reports the option values that cannot work, each wrapping
// ErrBadOption.
func (c *config) check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadOption}, args...)...))
	}
	if c.maxFrameSize != 0 && c.maxFrameSize < codec.MinMaxFrameSize {
		bad("WithMaxFrameSize(%d): max frame size %d is below %d, the least SPOP allows", c.maxFrameSize, c.maxFrameSize, codec.MinMaxFrameSize)
	}
	for _, o := range []struct {
		name string
		v    int
	}{
		{"WithMaxInFlight", c.maxInFlight},
		{"WithWorkers", c.workers},
		{"WithMaxMessageSize", c.maxMessageSize},
		{"WithMaxConnections", c.maxConns},
	} {
		if o.v < 0 {
			bad("%s(%d): negative (0 means the default)", o.name, o.v)
		}
	}
	for _, o := range []struct {
		name string
		d    time.Duration
	}{
		{"WithTimeout", c.timeout},
		{"WithHelloTimeout", c.helloTimeout},
		{"WithWriteTimeout", c.writeTimeout},
		{"WithIdleTimeout", c.idleTimeout},
		{"WithShutdownTimeout", c.shutdownTimeout},
	} {
		if o.d < 0 {
			bad("%s(%v): negative duration (0 means the default)", o.name, o.d)
		}
	}
	if c.errorVarSet {
		if _, err := codec.AppendSetVar(nil, c.errorVar.Scope, c.errorVar.Name, codec.Int64(0)); err != nil {
			bad("WithErrorVar(%v, %q): %v", c.errorVar.Scope, c.errorVar.Name, err)
		}
	}
	for _, p := range c.tr.allow {
		if !p.IsValid() {
			bad("WithAllowedNetworks: an invalid prefix (%v)", p)
		}
	}
	if err := checkTLS(c.tr.tls); err != nil {
		bad("WithTLS: %v", err)
	}
	return errors.Join(errs...)
}
