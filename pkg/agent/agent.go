package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/conn"
	"github.com/spoe-forge/spoe-forge/pkg/dispatch"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
	"go.uber.org/zap"
)

// ErrAgentClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrAgentClosed = errors.New("agent: closed")

// Agent is an SPOE agent. Create it with New, register handlers, then serve.
// Handlers must all be registered before the first Serve; registering one
// later panics, as registering a name twice or a nil handler does (see
// Message). The zero Agent is ready to use, with every option at its
// default, as New() returns it. An Agent must not be copied once used.
type Agent struct {
	cfg      config
	log      *zap.Logger
	handlers map[string]Handler
	fallback Handler
	use      []Middleware
	frozen   bool // under mu: init has begun, registrations are refused

	setupOnce sync.Once
	once      sync.Once
	ready     atomic.Bool // set once init has run; orders reads of disp
	disp      *dispatch.Dispatcher
	initErr   error
	connCfg   conn.Config

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn.Conn]struct{}
	closed    bool
	active    sync.WaitGroup // connections being served
	baseStop  context.CancelFunc

	// Between accept and the HELLO (transport.go).
	obs        observe.Observer
	failedTLS  limitedLog
	refused    limitedLog
	stopping   context.Context // cancelled once the agent stops accepting: ends TLS handshakes
	stopAccept context.CancelFunc

	lame      atomic.Bool   // failing health checks: the lame-duck period has begun
	lastCheck atomic.Int64  // when the last health check was answered (Unix ns), 0 if never
	quit      chan struct{} // closed by Close: ends a lame-duck period at once
	quitOnce  sync.Once
}

// New returns an agent configured by opts. It cannot fail: an option value
// that cannot work is reported by Serve, ListenAndServe and Run
// (ErrBadOption).
func New(opts ...Option) *Agent {
	a := &Agent{}
	for _, o := range opts {
		o(&a.cfg)
	}
	a.setup()
	return a
}

// setup gives the agent what New gives it, once: a zero Agent{} gets it
// from the first method that needs it.
func (a *Agent) setup() {
	a.setupOnce.Do(func() {
		a.mu.Lock()
		if a.handlers == nil {
			a.handlers = make(map[string]Handler)
		}
		a.mu.Unlock()
		a.quit = make(chan struct{})
		a.stopping, a.stopAccept = context.WithCancel(context.Background())
		if a.cfg.logger == nil {
			a.cfg.logger = zap.NewNop()
		}
		a.log = a.cfg.logger
	})
}

// Message registers the handler of the SPOE message name (as named by a
// spoe-message section), wrapped in mw (mw[0] outermost), inside the
// agent-wide middleware of Use.
//
// Like http.ServeMux, it panics on a registration that cannot be what the
// caller meant: an empty name, a nil handler, a name registered before, or
// any registration once the agent has started serving (Serve,
// ListenAndServe, Run) or been stopped (Shutdown, Close).
func (a *Agent) Message(name string, h HandlerFunc, mw ...Middleware) {
	if h == nil {
		panic(fmt.Sprintf("spoe-forge: nil handler for message %q", name))
	}
	a.register("Message", name, h, mw)
}

// Handle is Message for a Handler; it panics as Message does.
func (a *Agent) Handle(name string, h Handler, mw ...Middleware) {
	if isNil(h) {
		panic(fmt.Sprintf("spoe-forge: nil handler for message %q", name))
	}
	a.register("Handle", name, h, mw)
}

func (a *Agent) register(method, name string, h Handler, mw []Middleware) {
	if name == "" {
		panic("spoe-forge: " + method + " with an empty message name (HAProxy never sends one)")
	}
	a.setup()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mustNotServe(fmt.Sprintf("%s(%q)", method, name))
	if _, dup := a.handlers[name]; dup {
		panic(fmt.Sprintf("spoe-forge: multiple registrations for message %q", name))
	}
	a.handlers[name] = spoe.Chain(h, mw...)
}

// isNil reports a nil Handler, or a nil HandlerFunc in one.
func isNil(h Handler) bool {
	f, ok := h.(HandlerFunc)
	return h == nil || ok && f == nil
}

// mustNotServe panics if the agent has started: handlers were composed
// then, and a registration now would never take effect. what names the
// call. The caller holds mu.
func (a *Agent) mustNotServe(what string) {
	if a.frozen {
		panic("spoe-forge: " + what + " after the agent started serving or was stopped: register handlers and middleware before Serve, ListenAndServe or Run")
	}
}

// Fallback registers the handler of messages that have none. Without one
// they are ignored, and their NOTIFY is still acknowledged. It panics on a
// nil handler, a second Fallback, or once the agent has started serving, as
// Message does.
func (a *Agent) Fallback(h HandlerFunc, mw ...Middleware) {
	if h == nil {
		panic("spoe-forge: nil fallback handler")
	}
	a.setup()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mustNotServe("Fallback")
	if a.fallback != nil {
		panic("spoe-forge: multiple registrations of the fallback handler")
	}
	a.fallback = spoe.Chain(h, mw...)
}

// Use adds middleware that wraps every handler, outside the per-message
// middleware; the first added is the outermost. Middleware is composed once,
// when the agent starts serving: Use panics after that, as Message does.
func (a *Agent) Use(mw ...Middleware) {
	a.setup()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mustNotServe("Use")
	a.use = append(a.use, mw...)
}

func (a *Agent) init() error {
	a.setup()
	a.once.Do(func() {
		c := a.cfg
		a.mu.Lock()
		a.frozen = true
		registered, fallback, use := a.handlers, a.fallback, a.use
		a.mu.Unlock()
		if a.initErr = c.check(); a.initErr != nil {
			return
		}
		a.initTransport()
		base := c.base
		if base == nil {
			base = context.Background()
		}
		base, a.baseStop = context.WithCancel(base)
		caps := codec.CapPipelining | codec.CapFragmentation
		if c.noPipelining {
			caps &^= codec.CapPipelining
		}
		if c.noFragmentation {
			caps &^= codec.CapFragmentation
		}
		if c.async {
			caps |= codec.CapAsync
		}
		handlers := make(map[string]spoe.Handler, len(registered))
		for k, v := range registered {
			handlers[k] = spoe.Chain(v, use...)
		}
		if fallback != nil {
			fallback = spoe.Chain(fallback, use...)
		}
		a.disp, a.initErr = dispatch.New(dispatch.Config{
			Handlers:       handlers,
			Fallback:       fallback,
			Workers:        or(c.workers, DefaultWorkers),
			Timeout:        orDur(c.timeout, DefaultTimeout),
			MaxMessageSize: or(c.maxMessageSize, DefaultMaxMessageSize),
			ErrorVar:       c.errorVar,
			Async:          c.async,
			Base:           base,
			Logger:         a.log,
			Observer:       c.observer,
		})
		a.connCfg = conn.Config{
			MaxFrameSize: uint32(or(int(c.maxFrameSize), DefaultMaxFrameSize)),
			Capabilities: caps,
			MaxInFlight:  or(c.maxInFlight, DefaultMaxInFlight),
			HelloTimeout: orDur(c.helloTimeout, DefaultHelloTimeout),
			WriteTimeout: orDur(c.writeTimeout, DefaultWriteTimeout),
			IdleTimeout:  c.idleTimeout,
			Base:         base,
			Closing:      a.forget,
			Healthcheck:  a.healthcheck,
			Rescue:       func(c *conn.Conn, frame []byte) { a.disp.Rescue(c, frame) },
			Logger:       a.log,
			Observer:     c.observer,
			Buffers:      conn.NewBuffers(),
		}
		a.ready.Store(true)
	})
	return a.initErr
}

func or(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// ListenAndServe listens on addr and serves until Shutdown or Close. addr is
// "host:port" for TCP or "unix:/path/to.sock" for a Unix socket: a socket
// file left by a crashed run is replaced, one that another process serves is
// not (ErrSocketInUse), the file gets WithSocketMode's mode and is removed
// when the agent stops.
func (a *Agent) ListenAndServe(addr string) error {
	if err := a.cfg.check(); err != nil {
		return err // before listening, as Serve would
	}
	l, err := a.listen(addr)
	if err != nil {
		return err
	}
	return a.Serve(l)
}

// Listen opens a listener for addr as ListenAndServe understands it (a unix
// socket gets the process umask's mode).
func Listen(addr string) (net.Listener, error) { return listen(addr, 0) }

// Serve accepts connections on l and serves each until Shutdown or Close,
// after which it returns ErrAgentClosed. l is closed when Serve returns.
func (a *Agent) Serve(l net.Listener) error {
	if err := a.init(); err != nil {
		_ = l.Close()
		return err
	}
	if !a.track(l, true) {
		_ = l.Close()
		return ErrAgentClosed
	}
	defer a.track(l, false)
	a.log.Info("agent listening", zap.Stringer("addr", l.Addr()))
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if a.isClosed() {
				return ErrAgentClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				a.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !a.admit(nc) {
			continue
		}
		nc = a.wrap(nc)
		helloBy := time.Now().Add(a.connCfg.HelloTimeout)
		c := conn.New(nc, &a.connCfg, a.disp)
		if !a.addConn(c) {
			c.Abort()
			continue
		}
		go a.serveConn(c, nc, helloBy)
	}
}

func (a *Agent) track(l net.Listener, add bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.listeners == nil {
		a.listeners = make(map[net.Listener]struct{})
	}
	if add {
		if a.closed {
			return false
		}
		a.listeners[l] = struct{}{}
		return true
	}
	delete(a.listeners, l)
	_ = l.Close()
	return true
}

func (a *Agent) addConn(c *conn.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	if a.cfg.maxConns > 0 && len(a.conns) >= a.cfg.maxConns {
		a.obs.ConnRefused(observe.RefusedLimit)
		a.refused.log(a.log, "connection limit reached: closing a new connection", zap.Int("limit", a.cfg.maxConns))
		return false
	}
	if a.conns == nil {
		a.conns = make(map[*conn.Conn]struct{})
	}
	a.conns[c] = struct{}{}
	a.active.Add(1)
	return true
}

// forget drops c from the live connections once it stops exchanging
// frames; its goroutines are still counted by active until Serve returns.
func (a *Agent) forget(c *conn.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
}

func (a *Agent) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// close stops accepting and returns the live connections.
func (a *Agent) close() []*conn.Conn {
	if a.stopAccept != nil {
		a.stopAccept()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for l := range a.listeners {
		_ = l.Close()
	}
	conns := make([]*conn.Conn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	return conns
}

// abortAll closes every connection at once and cancels every handler's
// context, async ones included.
func (a *Agent) abortAll() {
	a.quitOnce.Do(func() { close(a.quit) })
	_ = a.init()
	if a.baseStop != nil {
		a.baseStop()
	}
	for _, c := range a.close() {
		c.Abort()
	}
}

// Connections returns the number of connections exchanging frames (a
// connection that has ended may still be waiting for its handlers).
func (a *Agent) Connections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// InFlight returns the NOTIFYs received and not yet answered, over all
// connections. It takes a lock per connection: call it to sample, as a
// metrics scrape does, not per NOTIFY.
func (a *Agent) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for c := range a.conns {
		n += c.InFlight()
	}
	return n
}

// Workers returns how many pool workers are running a handler and how many
// NOTIFYs wait for one.
func (a *Agent) Workers() (running, waiting int) {
	if !a.ready.Load() || a.disp == nil {
		return 0, 0 // not serving yet
	}
	return a.disp.Running(), a.disp.Waiting()
}

// Shutdown stops the agent gracefully: it stops accepting, lets every
// connection finish the NOTIFYs it has accepted and flush their ACKs, sends
// AGENT-DISCONNECT status 0 and closes, then waits for handlers still
// running (those answered at their deadline). If ctx ends first, the
// remaining connections are closed at once, handlers' contexts are
// cancelled, and Shutdown returns ctx's error without waiting for handlers
// that ignore their context: they finish in the background and their
// results are dropped.
//
// With WithLameDuck, Shutdown first spends the lame-duck period failing
// HAProxy's health checks while it keeps serving (see WithLameDuck); the
// period ends early if ctx ends or Close is called, and the drain then has
// what is left of ctx.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.setup()
	return a.shutdown(ctx, max(a.cfg.lameDuck, 0))
}

// healthcheck is the connections' Config.Healthcheck: it notes that
// somebody checks the agent's health, and fails the check once the
// lame-duck period has begun.
func (a *Agent) healthcheck() (bool, codec.Status, string) {
	a.lastCheck.Store(time.Now().UnixNano())
	if a.lame.Load() {
		return false, StatusLameDuck, "lame duck: the agent is shutting down"
	}
	return true, codec.StatusNormal, ""
}

// LameDuck reports whether the agent's lame-duck period has begun: it fails
// health checks, and will drain and stop.
func (a *Agent) LameDuck() bool { return a.lame.Load() }

// lameDuck runs the lame-duck period d (none if d <= 0): health checks fail
// while every connection is served as usual, until d has passed, ctx ends
// or Close is called. It is skipped when no health check was answered
// within d.
func (a *Agent) lameDuck(ctx context.Context, d time.Duration) {
	if d <= 0 || a.isClosed() {
		return
	}
	last := a.lastCheck.Load()
	if last == 0 || time.Since(time.Unix(0, last)) > d {
		a.log.Info("no health check answered lately: no lame-duck period", zap.Duration("period", d))
		return
	}
	a.lame.Store(true)
	a.log.Info("lame duck: failing health checks, serving every connection", zap.Duration("period", d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-a.quit:
	}
}

func (a *Agent) shutdown(ctx context.Context, lameDuck time.Duration) error {
	a.lameDuck(ctx, lameDuck)
	for _, c := range a.close() {
		c.Drain()
	}
	done := make(chan struct{})
	go func() {
		a.active.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
		if a.ready.Load() && a.disp != nil {
			err = a.disp.Wait(ctx)
		}
	case <-ctx.Done():
		err = ctx.Err()
		a.abortAll()
		<-done // prompt: no connection waits for handlers once aborted
	}
	a.release()
	return err
}

// Close stops the agent at once: listeners and connections are closed and
// handlers' contexts cancelled. It waits for the connections' goroutines,
// which end promptly, but not for handlers: a handler that ignores its
// context finishes in the background and its result is dropped.
func (a *Agent) Close() error {
	a.setup()
	a.abortAll()
	a.active.Wait()
	a.release()
	return nil
}

func (a *Agent) release() {
	_ = a.init() // orders this after a concurrent Serve's init
	if a.baseStop != nil {
		a.baseStop()
	}
	if a.disp != nil {
		a.disp.Close()
	}
}

// Run serves addr (as ListenAndServe) until SIGTERM or SIGINT, then spends
// the lame-duck period (WithLameDuck; DefaultLameDuck unless set) failing
// HAProxy's health checks while it keeps serving, and then shuts down
// gracefully within the shutdown timeout (WithShutdownTimeout). It returns
// nil after a clean shutdown.
func (a *Agent) Run(addr string) error {
	if err := a.cfg.check(); err != nil {
		return err
	}
	l, err := a.listen(addr)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	select {
	case err := <-served:
		return err
	case s := <-sig:
		a.log.Info("signal received: lame duck, then drain", zap.Stringer("signal", s))
	}
	lame := a.cfg.lameDuck
	if lame == 0 {
		lame = DefaultLameDuck
	}
	lame = max(lame, 0)
	ctx, cancel := context.WithTimeout(context.Background(), lame+orDur(a.cfg.shutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	err = a.shutdown(ctx, lame)
	if serr := <-served; !errors.Is(serr, ErrAgentClosed) && err == nil {
		err = serr
	}
	return err
}
