// Package bufpool provides the reference-counted, size-classed read buffers
// that carry frames from a connection's reader to the workers that answer
// them.
//
// A read buffer holds many frames; each NOTIFY decoded from it keeps a
// reference until its ACK has been encoded, because argument values alias the
// buffer. The buffer returns to its pool when the last reference is released.
// Capacities come in power-of-two classes so that a connection can shrink its
// buffer when idle and grow it under load (bytebufferpool sizes buffers by
// observed use and cannot be asked for a capacity).
package bufpool

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Size classes: 1 KiB to 128 KiB. Larger buffers are allocated exactly and
// not pooled.
const (
	minShift = 10
	maxShift = 17
	// MinSize is the smallest class.
	MinSize = 1 << minShift
	// MaxPooled is the largest pooled class.
	MaxPooled = 1 << maxShift
)

// Pool is a set of size-classed buffer pools. The zero Pool is ready to use.
// It is safe for concurrent use.
type Pool struct {
	classes [maxShift - minShift + 1]sync.Pool
	gets    atomic.Int64
	puts    atomic.Int64
}

// Buf is a pooled buffer with a reference count. B's capacity is at least the
// size asked for; its length is the caller's business.
type Buf struct {
	B     []byte
	refs  atomic.Int32
	class int8 // -1: not pooled
	pool  *Pool
}

func classOf(size int) int {
	if size <= MinSize {
		return 0
	}
	c := bits.Len(uint(size-1)) - minShift
	if c > maxShift-minShift {
		return -1
	}
	return c
}

// Get returns a buffer with capacity at least size, length 0 and one
// reference, owned by the caller.
func (p *Pool) Get(size int) *Buf {
	p.gets.Add(1)
	c := classOf(size)
	if c < 0 {
		b := &Buf{B: make([]byte, 0, size), class: -1, pool: p}
		b.refs.Store(1)
		return b
	}
	if v := p.classes[c].Get(); v != nil {
		b := v.(*Buf)
		b.B = b.B[:0]
		b.refs.Store(1)
		return b
	}
	b := &Buf{B: make([]byte, 0, MinSize<<c), class: int8(c), pool: p}
	b.refs.Store(1)
	return b
}

// Outstanding returns the number of buffers got and not yet returned. Tests
// use it to prove that no path leaks a buffer.
func (p *Pool) Outstanding() int64 { return p.gets.Load() - p.puts.Load() }

// Retain adds a reference. The caller must already hold one.
func (b *Buf) Retain() { b.refs.Add(1) }

// Release drops a reference; the last one returns the buffer to its pool.
// The caller must not touch b after releasing its reference.
func (b *Buf) Release() {
	switch n := b.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("bufpool: Release of a free buffer")
	}
	p := b.pool
	p.puts.Add(1)
	if b.class >= 0 {
		p.classes[b.class].Put(b)
	}
}
