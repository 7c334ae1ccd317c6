package dispatch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/spoe-forge/spoe-forge/internal/bufpool"
	"github.com/spoe-forge/spoe-forge/internal/enginekey"
	"github.com/spoe-forge/spoe-forge/internal/hctx"
	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
	"github.com/valyala/bytebufferpool"
	"go.uber.org/zap"
)

// Defaults for zero Config fields.
const (
	DefaultWorkers        = 1024
	DefaultTimeout        = 200 * time.Millisecond
	DefaultMaxMessageSize = 1 << 20
)

// Config configures a Dispatcher.
type Config struct {
	// Handlers maps SPOE message names to handlers. It is read-only once the
	// Dispatcher is built.
	Handlers map[string]spoe.Handler
	// Fallback handles messages with no handler; nil ignores them (the
	// NOTIFY is still acknowledged).
	Fallback spoe.Handler
	// Workers is the capacity of the worker pool shared by every connection.
	Workers int
	// Timeout is the per-NOTIFY deadline of handlers' contexts.
	Timeout time.Duration
	// MaxMessageSize bounds a reassembled (fragmented) NOTIFY.
	MaxMessageSize int
	// ErrorVar, when its Name is set, is set to an spoe.ErrCode* integer
	// when a handler fails.
	ErrorVar spoe.Var
	// Async enables replying on another connection of the same engine-id
	// when a NOTIFY's own connection died (HAProxy 2.6/3.0 with "async").
	Async bool
	// Base is the parent context of handlers' contexts on async
	// connections, and is consulted for values; nil means Background.
	Base context.Context
	// Logger receives handler failures.
	Logger *zap.Logger
	// Observer receives reassembly and per-message events; nil means none.
	Observer observe.Observer
}

// key opens pkg/spoe's engine hooks.
var key enginekey.Key

// workerIdle is how long an idle worker goroutine is kept.
const workerIdle = 10 * time.Second

// Dispatcher runs handlers for every connection of an agent.
//
// Every NOTIFY decoded on any connection becomes a task on one FIFO run
// queue, and workers from the pool take tasks from it in arrival order: a
// connection with many NOTIFYs cannot starve the others, and the queue never
// holds more than the connections' in-flight limits allow. Every task not
// yet answered is also on the deadline watch list, in arrival (and so
// deadline) order; a timer answers the tasks whose deadline passes before
// their handlers return.
type Dispatcher struct {
	cfg    Config
	routes map[string]route
	log    *zap.Logger
	timed  bool // an Observer wants per-message timings
	pool   *ants.PoolWithFuncGeneric[struct{}]
	ctxs   hctx.Alloc
	// buffers holds reassembled NOTIFYs.
	buffers bytebufferpool.Pool

	// Scheduling state, under mu.
	mu      sync.Mutex
	runq    ring     // tasks waiting for a worker, oldest first
	active  int      // workers invoked and not yet returned; at most cfg.Workers
	spare   bool     // a worker was invoked and has not taken a task yet
	live    taskList // tasks not yet answered, oldest (earliest deadline) first
	watchAt int64    // when watch fires (hctx.Now units); 0 when it is not set
	watch   *time.Timer
	closed  bool          // Close was called: no more workers are invoked
	idle    chan struct{} // made by Wait, closed when active drops to 0
	// free holds tasks to reuse. Workers put theirs back under mu, which
	// they take anyway; sessions take a handful at a time when they queue
	// theirs. Its length is bounded by the most tasks ever in flight.
	free []*task

	engMu   sync.Mutex
	engines map[string][]pipeline.Conn // async: live connections by engine-id
}

// New builds a Dispatcher and its worker pool.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Base == nil {
		cfg.Base = context.Background()
	}
	if cfg.Observer == nil {
		cfg.Observer = observe.Nop{}
	}

	if cfg.ErrorVar.Name != "" {
		if _, err := codec.AppendSetVar(nil, cfg.ErrorVar.Scope, cfg.ErrorVar.Name, codec.Int64(0)); err != nil {
			return nil, fmt.Errorf("dispatch: error variable: %w", err)
		}
	}
	_, nop := cfg.Observer.(observe.Nop)
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, engines: make(map[string][]pipeline.Conn), timed: !nop,
		routes: make(map[string]route, len(cfg.Handlers))}
	for name, h := range cfg.Handlers {
		if h != nil {
			d.routes[name] = route{h: h, name: name}
		}
	}
	d.watch = time.AfterFunc(time.Hour, d.expire)
	d.watch.Stop()
	pool, err := ants.NewPoolWithFuncGeneric(cfg.Workers, d.work,
		// Invoke waits for a free worker. The dispatcher invokes one only
		// while fewer than cfg.Workers are active, so a wait lasts only
		// until a worker that has just finished is back in the pool.
		ants.WithNonblocking(false),
		// Workers idle for workerIdle exit, so that a burst does not leave
		// its goroutines behind; steady load keeps them warm.
		ants.WithExpiryDuration(workerIdle),
		ants.WithLogger(antsLogger{cfg.Logger}),
		ants.WithPanicHandler(func(p any) {
			// run recovers handler panics itself; this is a last resort.
			cfg.Logger.Error("worker panicked outside a handler", zap.Any("panic", p))
		}))
	if err != nil {
		return nil, fmt.Errorf("dispatch: worker pool: %w", err)
	}
	d.pool = pool
	return d, nil
}

type route struct {
	h    spoe.Handler
	name string
}

type antsLogger struct{ l *zap.Logger }

func (a antsLogger) Printf(format string, args ...any) {
	a.l.Warn("worker pool", zap.String("message", fmt.Sprintf(format, args...)))
}

// Close stops invoking workers and releases the pool without waiting for
// handlers: a handler that ignores its context goes on in the background
// until it returns, and its result is dropped. Call Wait first to give
// running handlers time to return.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	d.watch.Stop()
	d.watchAt = 0
	d.mu.Unlock()
	d.pool.Release()
}

// Wait waits until no worker runs a handler, or ctx ends.
func (d *Dispatcher) Wait(ctx context.Context) error {
	d.mu.Lock()
	if d.active == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running returns the number of workers running a task.
func (d *Dispatcher) Running() int { return d.pool.Running() }

// Waiting returns the number of NOTIFYs waiting for a free worker.
func (d *Dispatcher) Waiting() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runq.n
}

// Task states. A task is queued, then running, then either done (its
// worker answered it) or expired (the deadline watch answered it first, and
// whatever its handlers do afterwards is dropped).
const (
	tsQueued uint32 = iota
	tsRunning
	tsDone
	tsExpired
)

// task is one NOTIFY on its way through a worker. Tasks are pooled.
type task struct {
	d     *Dispatcher
	c     pipeline.Conn
	s     *session
	sid   uint64
	fid   uint64
	due   int64 // the NOTIFY's deadline, as hctx.Now counts
	state atomic.Uint32
	// cur is the context of the handler running, if any: the deadline
	// watch and the connection's cancellation end it (it is managed).
	cur  atomic.Pointer[hctx.Ctx]
	rx   *bufpool.Buf               // reference to the frame's read buffer, or nil
	own  *bytebufferpool.ByteBuffer // reassembled payload, or nil
	ack  []byte                     // the ACK being built; kept across uses
	note codec.Notify
	msg  spoe.Message
	acts spoe.Actions

	// The deadline watch list, under Dispatcher.mu.
	prev, next *task
	linked     bool
}

// getTask returns a free task for s: from the session's own cache (the
// reader's, no lock), refilled from the dispatcher's free list when the
// session queues its tasks (flush), or a new one.
func (d *Dispatcher) getTask(s *session) *task {
	if len(s.free) == 0 {
		d.mu.Lock()
		d.refillLocked(s)
		d.mu.Unlock()
	}
	if n := len(s.free); n > 0 {
		t := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return t
	}
	return &task{d: d}
}

// refillLocked moves up to flushBatch free tasks to s's cache. d.mu is
// held.
func (d *Dispatcher) refillLocked(s *session) {
	if n := len(d.free); n > 0 && len(s.free) < flushBatch {
		k := min(n, flushBatch-len(s.free))
		s.free = append(s.free, d.free[n-k:]...)
		clear(d.free[n-k:])
		d.free = d.free[:n-k]
	}
}

// reset drops the task's buffers and references, ready for reuse.
func (t *task) reset() {
	d := t.d
	if t.rx != nil {
		t.rx.Release()
		t.rx = nil
	}
	if t.own != nil {
		d.buffers.Put(t.own)
		t.own = nil
	}
	t.note.Reset()
	spoe.Bind(key, &t.msg, "", nil, 0, 0, "")
	spoe.Begin(key, &t.acts, nil)
	t.c, t.s = nil, nil
}

// freeLocked resets t and puts it on the free list. d.mu is held; t must be
// off the run queue and the watch list.
func (d *Dispatcher) freeLocked(t *task) {
	t.reset()
	d.free = append(d.free, t)
}

// free is freeLocked for a caller that does not hold d.mu.
func (d *Dispatcher) free1(t *task) {
	t.reset()
	d.mu.Lock()
	d.free = append(d.free, t)
	d.mu.Unlock()
}

// ring is a FIFO of tasks. It grows only when full, so its size is bounded
// by the most tasks ever queued at once, which the connections' in-flight
// limits bound.
type ring struct {
	buf  []*task
	head int
	n    int
}

func (r *ring) push(t *task) {
	if r.n == len(r.buf) {
		nb := make([]*task, max(64, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = t
	r.n++
}

func (r *ring) pop() *task {
	if r.n == 0 {
		return nil
	}
	t := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return t
}

// taskList is the intrusive doubly linked watch list.
type taskList struct{ head, tail *task }

// insert links t in deadline order. Tasks come in about that order (a
// deadline is its batch's read time plus the timeout), so the search from
// the tail stops at once, but not always: a reader that blocked for an
// in-flight slot after reading its clock queues tasks with deadlines
// earlier than others already linked.
func (l *taskList) insert(t *task) {
	after := l.tail
	for after != nil && after.due > t.due {
		after = after.prev
	}
	if after == l.tail {
		l.pushBack(t)
		return
	}
	t.linked = true
	t.prev = after
	if after != nil {
		t.next = after.next
		after.next = t
	} else {
		t.next = l.head
		l.head = t
	}
	t.next.prev = t
}

func (l *taskList) pushBack(t *task) {
	t.prev, t.next, t.linked = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = t
	} else {
		l.head = t
	}
	l.tail = t
}

func (l *taskList) remove(t *task) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		l.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		l.tail = t.prev
	}
	t.prev, t.next, t.linked = nil, nil, false
}
