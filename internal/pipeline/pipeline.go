// Package pipeline holds the few types that a connection (pkg/conn) and the
// dispatcher (pkg/dispatch) exchange, so that neither imports the other.
package pipeline

import (
	"context"
	"sync"

	"github.com/spoe-forge/spoe-forge/internal/bufpool"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Batch is a set of NOTIFY and continuation (UNSET) frames read together.
// The payloads of Frames alias Buf. A Stage borrows a Batch for the length of
// Dispatch: it Retains Buf for every frame it keeps past the call, and the
// connection releases the batch's own reference afterwards.
type Batch struct {
	Buf    *bufpool.Buf
	Frames []codec.Frame
	// Pool is where Recycle puts the emptied batch; nil drops it.
	Pool *sync.Pool
}

// Release drops the batch's reference to its buffer and empties it.
func (b *Batch) Release() {
	if b.Buf != nil {
		b.Buf.Release()
		b.Buf = nil
	}
	clear(b.Frames)
	b.Frames = b.Frames[:0]
}

// Recycle releases the batch and returns it to its pool. The caller must not
// touch b afterwards.
func (b *Batch) Recycle() {
	b.Release()
	if b.Pool != nil {
		b.Pool.Put(b)
	}
}

// Session describes a negotiated connection.
type Session struct {
	// EngineID is the engine-id HAProxy sent (empty when absent). With async,
	// connections of one engine-id are interchangeable for ACKs.
	EngineID string
	// MaxFrameSize is the negotiated max-frame-size.
	MaxFrameSize uint32
	// Capabilities is what the agent announced.
	Capabilities codec.Capabilities
	// Remote is the peer's address, for logs.
	Remote string
}

// Conn is the connection as the dispatcher sees it. It is implemented by
// pkg/conn and safe for concurrent use.
type Conn interface {
	// Session returns the negotiated parameters.
	Session() *Session
	// Context is cancelled when the connection dies or is drained.
	Context() context.Context
	// Acquire takes one in-flight slot, blocking while the connection's
	// limit of unanswered NOTIFYs is reached. It returns false once the
	// connection is closing; the caller then drops the frame.
	Acquire() bool
	// TryAcquire takes one in-flight slot if one is free, without
	// blocking. It returns false when none is, or the connection is
	// closing.
	TryAcquire() bool
	// Reply queues a whole ACK frame (it is copied) for the NOTIFY that holds
	// a slot of this connection, and releases that slot once the frame has
	// been written (or dropped). It returns false if the connection can no
	// longer write; the slot is released all the same.
	Reply(frame []byte) bool
	// Forward queues a whole ACK frame for a NOTIFY received on another
	// connection of the same engine (async). It holds no slot. It returns
	// false if the connection can no longer write.
	Forward(frame []byte) bool
}

// Dispatcher opens the dispatcher stage of each connection once its HELLO
// is negotiated. It is implemented by pkg/dispatch.
type Dispatcher interface {
	Open(c Conn) Stage
}

// Stage is the dispatcher stage of one connection.
type Stage interface {
	// Dispatch takes the NOTIFY and continuation frames of one read. It
	// runs on the connection's reader goroutine (so a Stage's own state
	// needs no lock) and may block while the connection's in-flight limit
	// is reached, which is the back-pressure that stops reading. An error
	// is a protocol error that ends the connection with its status
	// (codec.StatusOf).
	Dispatch(b *Batch) error
	// Close ends the stage: no more batches. It returns once every NOTIFY
	// it accepted has been answered (a drained connection), or at once if
	// they can no longer be (the connection's context has ended).
	Close()
}
