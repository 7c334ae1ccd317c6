package conn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"

	"github.com/valyala/bytebufferpool"
)

// outbox is the writer stage. Producers (the decoder, the workers) append
// whole frames under the mutex; a writer takes everything queued so far in
// one swap and writes it with one call, under a write deadline, so that a
// frame is never split across writes. No lock is held during I/O.
//
// The writer is not a goroutine of its own: it runs when there is something
// to write and stops when the queue is empty. The producer that queues
// into an idle outbox starts it, either inline (the last ACK the
// connection owes: nothing else is coming, so write now, on this goroutine)
// or as a goroutine that yields once first, so that ACKs finishing at the
// same time leave in the same write.
type outbox struct {
	c       *Conn
	mu      sync.Mutex
	pending *bytebufferpool.ByteBuffer // nil when empty; owned by the queue until taken
	slots   int                        // in-flight slots the pending ACKs hold
	closed  bool                       // no more frames accepted
	writing bool                       // a writer runs
	failed  bool                       // a write failed: the rest is rescued, not written
	done    chan struct{}              // closed once closed and flushed
	ended   bool                       // done is closed
	pool    *bytebufferpool.Pool
	obs     observe.Observer
}

func (o *outbox) init(c *Conn) {
	o.c, o.pool, o.obs = c, &c.cfg.Buffers.write, c.cfg.Observer
	o.done = make(chan struct{})
}

// push appends frame; slot says whether it holds an in-flight slot. If no
// writer runs, it starts one: inline (the caller writes) or in a goroutine.
// It reports false, appending nothing, once the outbox is closed.
func (o *outbox) push(frame []byte, slot, inline bool) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if o.pending == nil {
		o.pending = o.pool.Get()
	}
	o.pending.B = append(o.pending.B, frame...)
	if slot {
		o.slots++
	}
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	o.obs.FrameOut(codec.FrameType(frame[codec.LengthPrefixLen]), len(frame)-codec.LengthPrefixLen)
	switch {
	case !start:
	case inline:
		o.write(1)
	default:
		go o.write(-1)
	}
	return true
}

// close stops accepting frames, after appending last (if not nil), and
// returns once everything queued has been written (or rescued, after a
// failed write) and the write side half-closed.
func (o *outbox) close(last []byte) {
	o.mu.Lock()
	if !o.closed && last != nil {
		if o.pending == nil {
			o.pending = o.pool.Get()
		}
		o.pending.B = append(o.pending.B, last...)
	}
	sent := !o.closed && last != nil
	o.closed = true
	start := !o.writing && !o.ended
	o.writing = o.writing || start
	o.mu.Unlock()
	if sent {
		o.obs.FrameOut(codec.FrameType(last[codec.LengthPrefixLen]), len(last)-codec.LengthPrefixLen)
	}
	if start {
		o.write(-1)
	}
	<-o.done
}

// write is the writer: it writes what is queued until the queue is empty.
// rounds bounds the writes of an inline writer (a worker: it must not be
// kept); past them it hands over to a writer goroutine. -1 is a writer
// goroutine's: no bound, and one yield first to gather concurrent ACKs.
func (o *outbox) write(rounds int) {
	c := o.c
	if rounds < 0 {
		runtime.Gosched()
	}
	for i := 0; ; i++ {
		o.mu.Lock()
		buf, slots := o.pending, o.slots
		o.pending, o.slots = nil, 0
		if buf == nil {
			o.writing = false
			end := o.closed && !o.ended
			o.ended = o.ended || end
			failed := o.failed
			o.mu.Unlock()
			if end {
				if !failed {
					if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
						_ = cw.CloseWrite()
					}
				}
				close(o.done)
			}
			return
		}
		if rounds >= 0 && i >= rounds {
			// An inline writer has done its share: put it back and let a
			// writer goroutine go on (writing stays true).
			o.pending, o.slots = buf, slots
			o.mu.Unlock()
			go o.write(-1)
			return
		}
		failed := o.failed
		o.mu.Unlock()
		if !failed {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			if _, err := c.nc.Write(buf.B); err != nil {
				failed = true
				o.mu.Lock()
				o.failed, o.closed = true, true // nothing more can be said
				o.mu.Unlock()
				c.writeFailed(err)
			}
		}
		if failed {
			// Every ACK that could not be written, in this batch or in
			// any queued before the outbox closed, is rescued.
			c.rescue(buf.B)
		}
		o.pool.Put(buf)
		c.gate.release(slots)
	}
}

// gate bounds a connection's in-flight NOTIFYs. Taking and giving back
// slots is a compare-and-swap; only a reader that must wait for a slot
// takes the mutex.
type gate struct {
	n       atomic.Int32
	max     int32
	closed  atomic.Bool
	waiters atomic.Int32 // readers waiting in acquire
	mu      sync.Mutex
	wait    chan struct{} // closed and replaced to wake waiters; nil when none wait
}

func (g *gate) tryAcquire() bool {
	for {
		cur := g.n.Load()
		if cur >= g.max || g.closed.Load() {
			return false
		}
		if g.n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

func (g *gate) acquire() bool {
	for {
		if g.tryAcquire() {
			return true
		}
		if g.closed.Load() {
			return false
		}
		g.mu.Lock()
		g.waiters.Add(1)
		// A release between our failed try and the waiter count would
		// not have woken us: try again now that it will.
		if g.tryAcquire() {
			g.waiters.Add(-1)
			g.mu.Unlock()
			return true
		}
		if g.closed.Load() {
			g.waiters.Add(-1)
			g.mu.Unlock()
			return false
		}
		if g.wait == nil {
			g.wait = make(chan struct{})
		}
		w := g.wait
		g.mu.Unlock()
		<-w
		g.waiters.Add(-1)
	}
}

func (g *gate) release(k int) {
	if k == 0 {
		return
	}
	g.n.Add(-int32(k))
	if g.waiters.Load() > 0 {
		g.wake()
	}
}

func (g *gate) wake() {
	g.mu.Lock()
	if g.wait != nil {
		close(g.wait)
		g.wait = nil
	}
	g.mu.Unlock()
}

// shut makes every present and future acquire return false.
func (g *gate) shut() {
	g.closed.Store(true)
	g.wake()
}

func (g *gate) inFlight() int { return int(g.n.Load()) }
