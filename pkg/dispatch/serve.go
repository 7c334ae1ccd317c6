package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/hctx"
	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
	"github.com/valyala/bytebufferpool"
	"go.uber.org/zap"
)

// Errors of reassembly.
var (
	// ErrMessageTooBig: a fragmented NOTIFY grew past Config.MaxMessageSize.
	ErrMessageTooBig = &codec.Error{Status: codec.StatusFrameTooBig, Reason: "reassembled NOTIFY exceeds the size limit"}
	// ErrUnknownFragment: a continuation frame for no NOTIFY in progress.
	ErrUnknownFragment = &codec.Error{Status: codec.StatusInterlaced, Reason: "fragment of no NOTIFY in progress"}
	// ErrTooManyFragmented: more fragmented NOTIFYs in progress at once than
	// a connection may have in flight.
	ErrTooManyFragmented = &codec.Error{Status: codec.StatusResource, Reason: "too many fragmented NOTIFYs in progress"}
)

// maxPartials bounds the fragmented NOTIFYs in progress on one connection.
// HAProxy 2.6/3.0 send one at a time per connection; interleaving is allowed
// but rare.
const maxPartials = 16

// session is the dispatcher stage of one connection. Fields other than wg
// are owned by the connection's reader goroutine, which calls Dispatch.
type session struct {
	d          *Dispatcher
	stopCancel func() bool
	c          pipeline.Conn
	parent     context.Context // handlers' contexts derive from it
	engineID   string
	limit      uint32 // largest ACK LENGTH: negotiated max-frame-size - 1
	async      bool
	wg         sync.WaitGroup // tasks not yet answered
	partials   []partial
	// pending are the tasks of the batch being dispatched, queued
	// together (flush) at the end of the batch, or before the reader may
	// block for an in-flight slot; free are tasks to reuse.
	pending []*task
	free    []*task
}

type partial struct {
	sid, fid uint64
	frames   int
	buf      *bytebufferpool.ByteBuffer
}

// Open starts the dispatcher stage of a connection whose HELLO is
// negotiated. It implements pipeline.Dispatcher.
func (d *Dispatcher) Open(c pipeline.Conn) pipeline.Stage {
	info := c.Session()
	s := &session{
		d:        d,
		c:        c,
		parent:   c.Context(),
		engineID: info.EngineID,
		limit:    info.MaxFrameSize - 1,
		async:    d.cfg.Async && info.Capabilities.Has(codec.CapAsync) && info.EngineID != "",
	}
	if s.async {
		// Handlers of an async connection outlive it: their ACK can leave
		// on another connection of the engine.
		s.parent = d.cfg.Base
		d.register(s)
	}
	// Handlers' contexts are managed: when the parent ends, the running
	// ones are ended here, once, rather than each registering with it.
	s.stopCancel = context.AfterFunc(s.parent, func() { d.cancelSession(s) })
	return s
}

// Dispatch implements pipeline.Stage: it reassembles fragments, decodes each
// complete NOTIFY into a task and queues it. It runs on the connection's
// reader goroutine.
func (s *session) Dispatch(b *pipeline.Batch) error { return s.d.dispatch(s, b) }

// Close implements pipeline.Stage.
func (s *session) Close() {
	d := s.d
	for _, p := range s.partials {
		d.buffers.Put(p.buf)
	}
	s.partials = nil
	d.waitAnswered(s)
	s.stopCancel()
	if s.async {
		d.unregister(s)
	}
}

// cancelSession ends the contexts of the handlers running for s, whose
// parent context has ended.
func (d *Dispatcher) cancelSession(s *session) {
	var ctxs []*hctx.Ctx
	d.mu.Lock()
	for t := d.live.head; t != nil; t = t.next {
		if t.s == s {
			if c := t.cur.Load(); c != nil {
				ctxs = append(ctxs, c)
			}
		}
	}
	d.mu.Unlock()
	err := s.parent.Err()
	for _, c := range ctxs {
		c.Cancel(err)
	}
}

// waitAnswered waits until every NOTIFY of s is answered (by its handlers or
// at its deadline), unless nothing can be answered any more: a connection
// that died (its context is cancelled; with async, the agent's base) does not
// wait for handlers, which finish in the background and whose ACKs are
// dropped. A drained connection waits: it flushes its ACKs before its
// AGENT-DISCONNECT, and the deadline watch bounds the wait.
func (d *Dispatcher) waitAnswered(s *session) {
	gone := s.parent.Done()
	if gone == nil {
		s.wg.Wait()
		return
	}
	select {
	case <-gone:
		return
	default:
	}
	answered := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(answered)
	}()
	select {
	case <-answered:
	case <-gone:
	}
}

// dispatch handles one batch; an error is a protocol error that ends the
// connection.
func (d *Dispatcher) dispatch(s *session, b *pipeline.Batch) error {
	defer d.flush(s)
	now := time.Now() // one clock read per batch: the NOTIFYs of a read arrived together
	for i := range b.Frames {
		f := &b.Frames[i]
		pi := s.find(f.StreamID, f.FrameID)
		switch {
		case f.Flags.Abort():
			// HAProxy gave up on a fragmented NOTIFY: drop it, answer
			// nothing. An ABORT for nothing in progress is tolerated.
			if pi >= 0 {
				s.drop(d, pi)
			}
		case f.Type == codec.FrameNotify && f.Flags.Fin():
			if pi >= 0 {
				return codec.ErrInterlaced
			}
			t := d.getTask(s)
			t.rx = b.Buf
			b.Buf.Retain() // the task's reference, released once its ACK is encoded
			if err := d.submit(s, t, f, f.Payload, now); err != nil {
				return err
			}
		case f.Type == codec.FrameNotify: // first fragment
			if pi >= 0 {
				return codec.ErrInterlaced
			}
			if len(s.partials) >= maxPartials {
				return ErrTooManyFragmented
			}
			if len(f.Payload) > d.cfg.MaxMessageSize {
				return ErrMessageTooBig
			}
			buf := d.buffers.Get()
			buf.B = append(buf.B[:0], f.Payload...)
			s.partials = append(s.partials, partial{sid: f.StreamID, fid: f.FrameID, frames: 1, buf: buf})
		default: // FrameUnset: a continuation
			if pi < 0 {
				return ErrUnknownFragment
			}
			p := &s.partials[pi]
			if len(p.buf.B)+len(f.Payload) > d.cfg.MaxMessageSize {
				return ErrMessageTooBig
			}
			p.buf.B = append(p.buf.B, f.Payload...)
			p.frames++
			if f.Flags.Fin() {
				d.cfg.Observer.Reassembled(p.frames)
				t := d.getTask(s)
				t.own = p.buf // ownership of the reassembled payload passes to the task
				s.remove(pi)
				if err := d.submit(s, t, f, t.own.B, now); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *session) find(sid, fid uint64) int {
	for i := range s.partials {
		if s.partials[i].sid == sid && s.partials[i].fid == fid {
			return i
		}
	}
	return -1
}

func (s *session) remove(i int) {
	last := len(s.partials) - 1
	s.partials[i] = s.partials[last]
	s.partials[last] = partial{}
	s.partials = s.partials[:last]
}

func (s *session) drop(d *Dispatcher, i int) {
	d.buffers.Put(s.partials[i].buf)
	s.remove(i)
}

// submit decodes the NOTIFY payload into t, takes an in-flight slot for
// it and adds it to the session's pending tasks. It owns t: on every path t
// is either pending or back on the free list.
func (d *Dispatcher) submit(s *session, t *task, f *codec.Frame, payload []byte, now time.Time) error {
	if err := t.note.Decode(payload); err != nil {
		t.reset()
		s.free = append(s.free, t)
		return err
	}
	if !s.c.TryAcquire() {
		// The connection's limit is reached: queue what is pending (their
		// ACKs are what frees slots), then wait.
		d.flush(s)
		if !s.c.Acquire() {
			t.reset()
			s.free = append(s.free, t) // closing: nobody will read an ACK
			return nil
		}
	}
	t.c, t.s, t.sid, t.fid = s.c, s, f.StreamID, f.FrameID
	t.due = hctx.Since(now) + int64(d.cfg.Timeout)
	t.state.Store(tsQueued)
	s.wg.Add(1)
	s.pending = append(s.pending, t)
	return nil
}

// flushBatch is how many free tasks a session takes at a time.
const flushBatch = 32

// flush queues the session's pending tasks for the workers, under one lock
// for the whole batch, and takes free tasks for the next one.
func (d *Dispatcher) flush(s *session) {
	if len(s.pending) == 0 {
		return
	}
	var closed []*task
	d.mu.Lock()
	if d.closed {
		closed = s.pending
	} else {
		first := s.pending[0].due
		for _, t := range s.pending {
			d.runq.push(t)
			d.live.insert(t)
			first = min(first, t.due)
		}
		if d.watchAt == 0 || first < d.watchAt {
			d.armLocked(first)
		}
	}
	d.refillLocked(s)
	spawn := d.wantWorkerLocked()
	d.mu.Unlock()
	clear(s.pending)
	s.pending = s.pending[:0]
	for _, t := range closed {
		d.answer(t.c, s, t.sid, t.fid, t.due, 0)
		d.free1(t)
	}
	if spawn {
		d.invoke()
	}
}

// wantWorkerLocked reports whether a worker should be invoked for the
// queued tasks, and counts it as active if so: one is, unless another is
// already on its way or every worker is busy. d.mu is held.
func (d *Dispatcher) wantWorkerLocked() bool {
	if d.spare || d.runq.n == 0 || d.active >= d.cfg.Workers || d.closed {
		return false
	}
	d.spare = true
	d.active++
	return true
}

// invoke starts a worker that wantWorkerLocked counted. If the pool is
// released (the agent is closing), the worker is uncounted and the queued
// tasks are answered here, with no actions, if no other worker is left to
// take them.
func (d *Dispatcher) invoke() {
	if d.pool.Invoke(struct{}{}) == nil {
		return
	}
	d.mu.Lock()
	d.spare = false
	d.active--
	var orphans []*task
	if d.active == 0 {
		for t := d.runq.pop(); t != nil; t = d.runq.pop() {
			if t.state.CompareAndSwap(tsQueued, tsExpired) {
				d.live.remove(t)
				orphans = append(orphans, t)
			} else {
				d.freeLocked(t) // answered at its deadline already
			}
		}
	}
	d.idleLocked()
	d.mu.Unlock()
	for _, t := range orphans {
		d.answer(t.c, t.s, t.sid, t.fid, t.due, 0)
		d.free1(t)
	}
}

// idleLocked wakes Wait if no worker is active. d.mu is held.
func (d *Dispatcher) idleLocked() {
	if d.active == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// work is the pool's function: it runs queued tasks, oldest first, until
// the queue is empty. Before each task it makes sure that, if more are
// waiting, another worker is on its way, so that a slow handler never holds
// up the tasks behind it; with fast handlers that spare finds the queue
// drained and leaves, and a burst costs two invocations instead of one per
// NOTIFY.
func (d *Dispatcher) work(struct{}) {
	ctxs := d.ctxs.Slab() // the handler contexts of this turn, taken without a lock
	defer d.ctxs.PutSlab(ctxs)
	d.mu.Lock()
	d.spare = false // this is the spare, started
	for {
		t := d.runq.pop()
		if t == nil {
			break
		}
		spawn := d.wantWorkerLocked()
		d.mu.Unlock()
		if spawn {
			d.invoke()
		}
		d.run(t, &ctxs)
		d.mu.Lock()
		if t.linked {
			d.live.remove(t)
		}
		// Freed under the lock it takes anyway: off the watch list, and
		// nobody else refers to it.
		d.freeLocked(t)
	}
	d.active--
	d.idleLocked()
	d.mu.Unlock()
}

// armLocked sets the deadline watch to fire at due. d.mu is held.
func (d *Dispatcher) armLocked(due int64) {
	if d.closed {
		return
	}
	d.watchAt = due
	d.watch.Reset(time.Duration(due - hctx.Now()))
}

// expire is the deadline watch: it answers every task whose deadline has
// passed and whose handlers have not returned (or not started), with the
// error variable set to spoe.ErrCodeTimeout, and drops whatever those handlers
// do afterwards. HAProxy thus has every answer by the deadline, and never
// a late one (on HAProxy 2.6/3.0 a late ACK can be taken for the next event
// of the same stream, spop.md Appendix A).
func (d *Dispatcher) expire() {
	type due struct {
		c        pipeline.Conn
		s        *session
		sid, fid uint64
		at       int64 // the task's deadline
		running  bool
		ctx      *hctx.Ctx // the running handler's, ended here
	}
	var late []due
	now := hctx.Now()
	d.mu.Lock()
	d.watchAt = 0
	t := d.live.head
	for t != nil && t.due <= now {
		next := t.next
		running := t.state.CompareAndSwap(tsRunning, tsExpired)
		if running || t.state.CompareAndSwap(tsQueued, tsExpired) {
			// A queued task stays in the run queue; the worker that
			// takes it sees the state and only releases it.
			d.live.remove(t)
			late = append(late, due{c: t.c, s: t.s, sid: t.sid, fid: t.fid, at: t.due, running: running, ctx: t.cur.Load()})
		}
		// Else its worker has answered it and is about to unlink it.
		t = next
	}
	// Skip the answered tasks still linked: their workers unlink them.
	for t != nil && t.state.Load() == tsDone {
		t = t.next
	}
	if t != nil {
		d.armLocked(max(t.due, now+int64(time.Millisecond)))
	}
	d.mu.Unlock()
	for _, l := range late {
		if l.ctx != nil {
			l.ctx.Expire() // contexts are never reused: safe after the unlock
		}
		if ce := d.log.Check(zap.WarnLevel, "NOTIFY answered at its deadline: its handler has not returned"); ce != nil {
			ce.Write(zap.Uint64("stream_id", l.sid), zap.Uint64("frame_id", l.fid),
				zap.Bool("started", l.running), zap.Duration("timeout", d.cfg.Timeout))
		}
		d.answer(l.c, l.s, l.sid, l.fid, l.at, spoe.ErrCodeTimeout)
	}
}

// answer sends the ACK of a NOTIFY that its handlers did not answer: no
// actions but the error variable, set to code if code is not 0 and the
// variable is configured. due is the NOTIFY's deadline. It counts the NOTIFY
// answered.
func (d *Dispatcher) answer(c pipeline.Conn, s *session, sid, fid uint64, due int64, code int) {
	var a spoe.Actions
	ack, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: sid, FrameID: fid})
	spoe.Begin(key, &a, ack)
	if ev := d.cfg.ErrorVar; code != 0 && ev.Name != "" {
		a.SetInt(ev.Scope, ev.Name, int64(code))
	}
	ack = spoe.Encoded(key, &a)
	_, _ = codec.FinishFrame(ack, start, codec.MaxFrameLen)
	if d.timed {
		d.cfg.Observer.Answered(d.since(due), code)
	}
	if !c.Reply(ack[start:]) && s.async {
		d.forward(s, ack[start:])
	}
	s.wg.Done()
}

func (d *Dispatcher) register(s *session) {
	d.engMu.Lock()
	d.engines[s.engineID] = append(d.engines[s.engineID], s.c)
	d.engMu.Unlock()
}

func (d *Dispatcher) unregister(s *session) {
	d.engMu.Lock()
	conns := d.engines[s.engineID]
	for i, c := range conns {
		if c == s.c {
			conns[i] = conns[len(conns)-1]
			conns[len(conns)-1] = nil
			conns = conns[:len(conns)-1]
			break
		}
	}
	if len(conns) == 0 {
		delete(d.engines, s.engineID)
	} else {
		d.engines[s.engineID] = conns
	}
	d.engMu.Unlock()
}

// Rescue sends an ACK frame that c could not deliver on another live
// connection of c's engine, when async was negotiated on c. It reports
// whether one took it.
func (d *Dispatcher) Rescue(c pipeline.Conn, frame []byte) bool {
	info := c.Session()
	if !d.cfg.Async || !info.Capabilities.Has(codec.CapAsync) || info.EngineID == "" {
		return false
	}
	return d.forward(&session{c: c, engineID: info.EngineID}, frame)
}

// forward sends an ACK whose connection died on another connection of the
// same engine. It reports whether one took it.
func (d *Dispatcher) forward(s *session, frame []byte) bool {
	d.engMu.Lock()
	defer d.engMu.Unlock()
	for _, c := range d.engines[s.engineID] {
		if c != s.c && c.Forward(frame) {
			return true
		}
	}
	return false
}

// run runs the handlers of one NOTIFY, encodes its ACK and replies, unless
// the deadline watch answered the NOTIFY first. The caller releases t.
func (d *Dispatcher) run(t *task, ctxs *hctx.Slab) {
	if !t.state.CompareAndSwap(tsQueued, tsRunning) {
		return // answered at its deadline while it waited
	}
	s := t.s
	ack, start := codec.BeginFrame(t.ack[:0], codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: t.sid, FrameID: t.fid})
	hdrEnd := len(ack)
	spoe.Begin(key, &t.acts, ack)
	code := 0
	for i := range t.note.Messages {
		m := &t.note.Messages[i]
		h, name := d.route(m.Name)
		if h == nil {
			continue
		}
		if t.state.Load() != tsRunning {
			break // answered at its deadline: the rest would be dropped
		}
		spoe.Bind(key, &t.msg, name, m, t.sid, t.fid, s.engineID)
		var t0 time.Time
		if d.timed {
			t0 = time.Now()
		}
		c := d.call(t, h, ctxs)
		if d.timed {
			d.cfg.Observer.Message(name, time.Since(t0), c)
		}
		if c != 0 {
			spoe.Failed(key, &t.acts, c)
			if code == 0 {
				code = c
			}
		} else {
			spoe.Succeeded(key, &t.acts)
		}
	}
	if err := t.acts.Err(); err != nil && code == 0 {
		code = spoe.ErrCodeAction
		d.log.Warn("invalid action dropped", zap.String("message", t.msg.Name()), zap.Error(err))
	}
	ev := d.cfg.ErrorVar
	if code != 0 && ev.Name != "" {
		t.acts.SetInt(ev.Scope, ev.Name, int64(code))
	}
	ack = spoe.Encoded(key, &t.acts)
	if _, err := codec.FinishFrame(ack, start, s.limit); err != nil {
		d.log.Warn("actions do not fit in one ACK: sending none",
			zap.String("message", t.msg.Name()), zap.Int("bytes", len(ack)-start), zap.Uint32("limit", s.limit))
		spoe.Begin(key, &t.acts, ack[:hdrEnd])
		code = spoe.ErrCodeTooLarge
		if ev.Name != "" {
			t.acts.SetInt(ev.Scope, ev.Name, int64(code))
		}
		ack = spoe.Encoded(key, &t.acts)
		_, _ = codec.FinishFrame(ack, start, codec.MaxFrameLen)
	}
	t.ack = ack
	// The ACK is encoded: the frame it may alias can go.
	if t.rx != nil {
		t.rx.Release()
		t.rx = nil
	}
	if !t.state.CompareAndSwap(tsRunning, tsDone) {
		return // the deadline watch answered it meanwhile: this result is late
	}
	if d.timed {
		d.cfg.Observer.Answered(d.since(t.due), code)
	}
	if !t.c.Reply(ack[start:]) && s.async {
		d.forward(s, ack[start:])
	}
	s.wg.Done()
}

// since returns the time from the read of a NOTIFY whose deadline is due to
// now: its deadline is its batch's read time plus the timeout (submit). It
// reads the clock: call it only when d.timed.
func (d *Dispatcher) since(due int64) time.Duration {
	return time.Duration(hctx.Now() - (due - int64(d.cfg.Timeout)))
}

// route returns the handler of a message name and the registered name.
func (d *Dispatcher) route(name []byte) (spoe.Handler, string) {
	if r, ok := d.routes[string(name)]; ok {
		return r.h, r.name
	}
	return d.cfg.Fallback, ""
}

// asPanic returns err's *PanicError, if any. (A function of its own: the
// pointer errors.As fills escapes, and must only be allocated on failure.)
func asPanic(err error) *spoe.PanicError {
	var pe *spoe.PanicError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// call runs one handler, turning a panic, an error or a missed deadline
// into an ErrCode. A handler that panicked or missed its deadline loses the
// actions it added: they are stale, and on HAProxy 2.6/3.0 a frame-id can be
// reused after a failed event, so a late answer could land on the next one.
func (d *Dispatcher) call(t *task, h spoe.Handler, ctxs *hctx.Slab) (code int) {
	mark := spoe.MarkOf(key, &t.acts)
	ctx := ctxs.GetManaged(&d.ctxs, t.s.parent, t.due)
	t.cur.Store(ctx)
	defer func() {
		if p := recover(); p != nil {
			ctx.Finish()
			t.cur.Store(nil)
			spoe.Rollback(key, &t.acts, mark)
			if ce := d.log.Check(zap.ErrorLevel, "handler panicked"); ce != nil {
				// The stack is taken only when the line is logged.
				ce.Write(zap.String("message", t.msg.Name()), zap.Any("panic", p), zap.Stack("stack"))
			}
			code = spoe.ErrCodePanic
		}
	}()
	err := h.HandleMessage(ctx, &t.msg, &t.acts)
	// From here on ctx reports Canceled, or DeadlineExceeded exactly when
	// the handler is counted late.
	late := ctx.Finish()
	t.cur.Store(nil)
	if err == nil && !late {
		return 0
	}
	pe := asPanic(err)
	switch {
	case pe != nil:
		// A Recover middleware caught the panic and made it an error.
		spoe.Rollback(key, &t.acts, mark)
		d.log.Error("handler panicked", zap.String("message", t.msg.Name()),
			zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		code = spoe.ErrCodePanic
	case late || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		spoe.Rollback(key, &t.acts, mark)
		code = spoe.ErrCodeTimeout
		if ce := d.log.Check(zap.WarnLevel, "handler missed its deadline"); ce != nil {
			ce.Write(zap.String("message", t.msg.Name()), zap.Duration("timeout", d.cfg.Timeout), zap.NamedError("returned", err))
		}
	default:
		code = spoe.ErrCodeHandler
		d.log.Warn("handler failed", zap.String("message", t.msg.Name()), zap.Error(err))
	}
	return code
}
