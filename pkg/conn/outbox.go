package conn

import (
	"sync"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"

	"github.com/valyala/bytebufferpool"
)

// outbox is the queue between every producer of frames (the decoder, the
// workers) and the writer. Producers append whole frames under the mutex; the
// writer takes everything queued so far in one swap and writes it with one
// call. No lock is held during I/O.
type outbox struct {
	mu      sync.Mutex
	pending *bytebufferpool.ByteBuffer // nil when empty; owned by the queue until taken
	slots   int                        // in-flight slots the pending ACKs hold
	closed  bool                       // no more frames accepted
	woken   bool                       // a wake-up is pending
	wake    chan struct{}              // capacity 1
	pool    *bytebufferpool.Pool
	obs     observe.Observer
}

func newOutbox(pool *bytebufferpool.Pool, obs observe.Observer) *outbox {
	return &outbox{wake: make(chan struct{}, 1), pool: pool, obs: obs}
}

// push appends frame; slot says whether it holds an in-flight slot. It
// reports false, appending nothing, once the outbox is closed.
func (o *outbox) push(frame []byte, slot bool) bool {
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
	wake := !o.woken
	o.woken = true
	o.mu.Unlock()
	if wake {
		o.wake <- struct{}{} // never blocks: woken guards the single token
	}
	o.obs.FrameOut(codec.FrameType(frame[codec.LengthPrefixLen]), len(frame)-codec.LengthPrefixLen)
	return true
}

// close stops accepting frames, after appending last (if not nil), and wakes
// the writer so that it flushes and exits.
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
	wake := !o.woken
	o.woken = true
	o.mu.Unlock()
	if wake {
		o.wake <- struct{}{}
	}
	if sent {
		o.obs.FrameOut(codec.FrameType(last[codec.LengthPrefixLen]), len(last)-codec.LengthPrefixLen)
	}
}

// take returns what is queued (ownership passes to the caller, who returns
// it to the pool), the slots it holds, and whether the outbox is closed.
func (o *outbox) take() (*bytebufferpool.ByteBuffer, int, bool) {
	o.mu.Lock()
	b, n, closed := o.pending, o.slots, o.closed
	o.pending, o.slots, o.woken = nil, 0, false
	o.mu.Unlock()
	return b, n, closed
}

// gate bounds a connection's in-flight NOTIFYs.
type gate struct {
	mu     sync.Mutex
	n, max int
	closed bool
	wait   chan struct{} // closed and replaced to wake waiters; nil when none wait
}

func (g *gate) acquire() bool {
	g.mu.Lock()
	for !g.closed && g.n >= g.max {
		if g.wait == nil {
			g.wait = make(chan struct{})
		}
		w := g.wait
		g.mu.Unlock()
		<-w
		g.mu.Lock()
	}
	ok := !g.closed
	if ok {
		g.n++
	}
	g.mu.Unlock()
	return ok
}

func (g *gate) release(k int) {
	if k == 0 {
		return
	}
	g.mu.Lock()
	g.n -= k
	if g.wait != nil {
		close(g.wait)
		g.wait = nil
	}
	g.mu.Unlock()
}

// shut makes every present and future acquire return false.
func (g *gate) shut() {
	g.mu.Lock()
	g.closed = true
	if g.wait != nil {
		close(g.wait)
		g.wait = nil
	}
	g.mu.Unlock()
}

func (g *gate) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}
