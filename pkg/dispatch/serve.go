package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
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

// session is the dispatcher's state for one connection. Fields other than
// wg are owned by the connection's Serve goroutine.
type session struct {
	c        pipeline.Conn
	parent   context.Context
	engineID string
	limit    uint32 // largest ACK LENGTH: negotiated max-frame-size - 1
	async    bool
	wg       sync.WaitGroup // tasks in flight
	partials []partial

	// The run queue: tasks decoded and waiting for a worker. Workers take
	// tasks from it until it is empty, so that a burst of NOTIFYs costs a
	// couple of pool invocations rather than one each.
	mu    sync.Mutex
	queue []*task // FIFO; owned under mu
	head  int
	spare bool // a worker was invoked for this session and has not started yet
}

type partial struct {
	sid, fid uint64
	frames   int
	buf      *bytebufferpool.ByteBuffer
}

// Serve consumes one connection's batches until in is closed, then waits for
// the connection's tasks to finish. It implements conn.Dispatcher.
func (d *Dispatcher) Serve(c pipeline.Conn, in <-chan *pipeline.Batch) {
	info := c.Session()
	s := &session{
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
	failed := false
	for b := range in {
		if !failed {
			if err := d.dispatch(s, b); err != nil {
				failed = true
				c.Fail(err)
			}
		}
		b.Recycle() // the batch's own reference; tasks hold theirs
	}
	for _, p := range s.partials {
		d.cfg.Buffers.Put(p.buf)
	}
	s.partials = nil
	s.wg.Wait()
	if s.async {
		d.unregister(s)
	}
}

// dispatch handles one batch; an error is a protocol error that ends the
// connection.
func (d *Dispatcher) dispatch(s *session, b *pipeline.Batch) error {
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
			t := d.getTask()
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
			buf := d.cfg.Buffers.Get()
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
				t := d.getTask()
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
	d.cfg.Buffers.Put(s.partials[i].buf)
	s.remove(i)
}

// submit decodes the NOTIFY payload into t and hands t to the pool. It owns
// t: on every path t is either running or released.
func (d *Dispatcher) submit(s *session, t *task, f *codec.Frame, payload []byte, now time.Time) error {
	if err := t.note.Decode(payload); err != nil {
		t.release()
		return err
	}
	if !s.c.Acquire() {
		t.release() // the connection is closing: nobody will read an ACK
		return nil
	}
	t.c, t.s, t.sid, t.fid = s.c, s, f.StreamID, f.FrameID
	t.ctx.start(s.parent, now.Add(d.cfg.Timeout))
	s.wg.Add(1)
	s.mu.Lock()
	s.queue = append(s.queue, t)
	need := !s.spare
	s.spare = true
	s.mu.Unlock()
	if need {
		d.invoke(s)
	}
	return nil
}

// invoke hands s to a pool worker, waiting while the pool is full (the
// back-pressure that stops the reader). If the pool is released, the queued
// tasks are answered here with empty ACKs.
func (d *Dispatcher) invoke(s *session) {
	for wait := time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		err := d.pool.Invoke(s)
		switch {
		case err == nil:
			return
		case errors.Is(err, ants.ErrPoolOverload):
			time.Sleep(wait)
			continue
		}
		// The pool is released: the agent is going down hard.
		s.mu.Lock()
		q := s.queue[s.head:]
		s.queue, s.head, s.spare = s.queue[:0], 0, false
		s.mu.Unlock()
		for _, t := range q {
			s.c.Reply(codec.AppendAck(nil, t.sid, t.fid, nil))
			t.ctx.reset()
			t.release()
			s.wg.Done()
		}
		return
	}
}

// work is the pool's function: it runs the session's queued tasks until the
// queue is empty. Before each task it makes sure that, if more are waiting,
// another worker is on its way, so that a slow handler never holds up the
// tasks behind it; with fast handlers that spare finds the queue drained and
// leaves, and a burst costs two invocations instead of one per NOTIFY.
func (d *Dispatcher) work(s *session) {
	s.mu.Lock()
	s.spare = false // this is the spare, started
	for s.head < len(s.queue) {
		t := s.queue[s.head]
		s.queue[s.head] = nil
		s.head++
		if s.head == len(s.queue) {
			s.queue, s.head = s.queue[:0], 0
		}
		spawn := s.head < len(s.queue) && !s.spare
		if spawn {
			s.spare = true
		}
		s.mu.Unlock()
		if spawn {
			if err := d.pool.Invoke(s); err != nil {
				// Pool full or released: this worker carries on alone.
				s.mu.Lock()
				s.spare = false
				s.mu.Unlock()
			}
		}
		d.run(t)
		s.mu.Lock()
	}
	s.mu.Unlock()
}

func (d *Dispatcher) register(s *session) {
	d.mu.Lock()
	d.engines[s.engineID] = append(d.engines[s.engineID], s.c)
	d.mu.Unlock()
}

func (d *Dispatcher) unregister(s *session) {
	d.mu.Lock()
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
	d.mu.Unlock()
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
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.engines[s.engineID] {
		if c != s.c && c.Forward(frame) {
			return true
		}
	}
	return false
}

// run runs the handlers of one NOTIFY, encodes its ACK and replies. It owns
// t and releases it.
func (d *Dispatcher) run(t *task) {
	s := t.s
	ack, start := codec.BeginFrame(t.ack[:0], codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: t.sid, FrameID: t.fid})
	hdrEnd := len(ack)
	t.acts.reset(ack)
	t.msg.streamID, t.msg.frameID, t.msg.engineID = t.sid, t.fid, s.engineID
	code := 0
	for i := range t.note.Messages {
		m := &t.note.Messages[i]
		h, name := d.route(m.Name)
		if h == nil {
			continue
		}
		t.msg.name, t.msg.m = name, m
		var t0 time.Time
		if d.timed {
			t0 = time.Now()
		}
		c := d.call(t, h)
		if d.timed {
			d.cfg.Observer.Message(name, time.Since(t0), c)
		}
		if c != 0 {
			t.acts.failed(c)
			if code == 0 {
				code = c
			}
		} else {
			t.acts.forgetErrorVars()
		}
	}
	if err := t.acts.err; err != nil && code == 0 {
		code = ErrCodeAction
		d.log.Warn("invalid action dropped", zap.String("message", t.msg.Name()), zap.Error(err))
	}
	ev := d.cfg.ErrorVar
	if code != 0 && ev.Name != "" {
		t.acts.SetInt(ev.Scope, ev.Name, int64(code))
	}
	ack = t.acts.buf
	if _, err := codec.FinishFrame(ack, start, s.limit); err != nil {
		d.log.Warn("actions do not fit in one ACK: sending none",
			zap.String("message", t.msg.Name()), zap.Int("bytes", len(ack)-start), zap.Uint32("limit", s.limit))
		t.acts.reset(ack[:hdrEnd])
		if ev.Name != "" {
			t.acts.SetInt(ev.Scope, ev.Name, ErrCodeTooLarge)
		}
		ack = t.acts.buf
		_, _ = codec.FinishFrame(ack, start, codec.MaxFrameLen)
	}
	t.ack = ack
	// The ACK is encoded: the frame it may alias can go.
	if t.rx != nil {
		t.rx.Release()
		t.rx = nil
	}
	if !t.c.Reply(ack[start:]) && s.async {
		d.forward(s, ack[start:])
	}
	s.wg.Done()
	t.ctx.reset()
	t.release()
}

// route returns the handler of a message name and the registered name.
func (d *Dispatcher) route(name []byte) (Handler, string) {
	if r, ok := d.routes[string(name)]; ok {
		return r.h, r.name
	}
	return d.cfg.Fallback, ""
}

// asPanic returns err's *PanicError, if any. (A function of its own: the
// pointer errors.As fills escapes, and must only be allocated on failure.)
func asPanic(err error) *PanicError {
	var pe *PanicError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// call runs one handler, turning a panic, an error or a missed deadline
// into an ErrCode. A handler that panicked or missed its deadline loses the
// actions it added: they are stale, and on HAProxy 2.6/3.0 a frame-id can be
// reused after a failed event, so a late answer could land on the next one.
func (d *Dispatcher) call(t *task, h Handler) (code int) {
	mark, n := len(t.acts.buf), t.acts.n
	defer func() {
		if p := recover(); p != nil {
			t.acts.buf, t.acts.n = t.acts.buf[:mark], n
			d.log.Error("handler panicked", zap.String("message", t.msg.Name()),
				zap.Any("panic", p), zap.Stack("stack"))
			code = ErrCodePanic
		}
	}()
	err := h.HandleMessage(&t.ctx, &t.msg, &t.acts)
	late := t.ctx.expired()
	if err == nil && !late {
		return 0
	}
	pe := asPanic(err)
	switch {
	case pe != nil:
		// A Recover middleware caught the panic and made it an error.
		t.acts.buf, t.acts.n = t.acts.buf[:mark], n
		d.log.Error("handler panicked", zap.String("message", t.msg.Name()),
			zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		code = ErrCodePanic
	case late || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		t.acts.buf, t.acts.n = t.acts.buf[:mark], n
		code = ErrCodeTimeout
		if ce := d.log.Check(zap.WarnLevel, "handler missed its deadline"); ce != nil {
			ce.Write(zap.String("message", t.msg.Name()), zap.Duration("timeout", d.cfg.Timeout), zap.NamedError("returned", err))
		}
	default:
		code = ErrCodeHandler
		d.log.Warn("handler failed", zap.String("message", t.msg.Name()), zap.Error(err))
	}
	return code
}
