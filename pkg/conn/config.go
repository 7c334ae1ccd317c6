package conn

import (
	"context"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/bufpool"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/valyala/bytebufferpool"
	"go.uber.org/zap"
)

// Defaults used for zero Config fields.
const (
	DefaultMaxFrameSize = codec.DefaultMaxFrameSize
	// DefaultMaxReceiveSize bounds frames larger than negotiated: HAProxy's
	// largest tune.bufsize in common use (64 KiB) less the length prefix.
	DefaultMaxReceiveSize = 64<<10 - 4
	DefaultMaxInFlight    = 64
	DefaultHelloTimeout   = 5 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultLinger         = time.Second
)

// Config is what a connection needs to know. A zero field takes its default.
// Config is shared by every connection of an agent and must not change once
// the first connection is served.
type Config struct {
	// MaxFrameSize is the largest max-frame-size the agent accepts; the
	// answer to HAProxy is min(offer, MaxFrameSize). At least 256.
	MaxFrameSize uint32
	// MaxReceiveSize bounds the frames the reader accepts when HAProxy
	// offered more than it was answered (HAProxy 3.1.0 sends frames up to
	// its own offer): frames up to min(offer, MaxReceiveSize) are read.
	// Never below MaxFrameSize.
	MaxReceiveSize uint32
	// Capabilities is what the agent implements. Pipelining and async are
	// announced only when HAProxy offers them too; fragmentation is
	// announced whenever it is set (HAProxy never offers it).
	Capabilities codec.Capabilities
	// MaxInFlight bounds the NOTIFYs of one connection that are received and
	// not yet answered. When it is reached the reader stops, and TCP pushes
	// back on HAProxy.
	MaxInFlight int
	// HelloTimeout bounds the wait for the HAPROXY-HELLO, counted from New:
	// whatever runs between New and Serve (a TLS handshake) counts too.
	HelloTimeout time.Duration
	// WriteTimeout bounds every write; a peer that stops reading loses its
	// connection instead of pinning the writer.
	WriteTimeout time.Duration
	// IdleTimeout, when positive, ends a connection that sends nothing for
	// that long with AGENT-DISCONNECT status 2. HAProxy manages idle
	// connections itself, so it is off by default.
	IdleTimeout time.Duration
	// Linger bounds the wait for the peer to close after an AGENT-DISCONNECT,
	// so that the frame is read before the socket closes.
	Linger time.Duration
	// Base is the parent of every connection's context, from which
	// handlers' contexts take their values and cancellation; nil means
	// context.Background().
	Base context.Context
	// Logger receives one line per connection end, and errors.
	Logger *zap.Logger
	// Rescue, if set, is given every ACK frame that a failed write could not
	// deliver, so that it can leave on another connection (async).
	Rescue func(c *Conn, frame []byte)
	// Closing, if set, is called once per connection when it stops
	// exchanging frames, before it waits for its remaining handlers.
	Closing func(*Conn)
	// Healthcheck, if set, is called for each health-check HELLO (HAProxy's
	// "option spop-check") before it is answered. It returns ok to answer
	// with an AGENT-HELLO, as without it; otherwise the check is answered
	// with an AGENT-DISCONNECT of the given status and message, which fails
	// it on every HAProxy version (spop.md §9): the agent's lame-duck state.
	Healthcheck func() (ok bool, status codec.Status, message string)
	// Observer receives the connection's events; nil means none.
	Observer observe.Observer
	// Buffers are the pools of the readers and the writers, shared by
	// the connections of one agent (NewBuffers); nil means private pools.
	Buffers *Buffers
}

// Buffers holds the read and write buffer pools that connections share.
type Buffers struct {
	read  bufpool.Pool
	write bytebufferpool.Pool
}

// NewBuffers returns empty pools.
func NewBuffers() *Buffers { return new(Buffers) }

// ReadOutstanding returns how many read buffers are out of the pool (held
// by a reader, or by a NOTIFY not yet answered). Tests use it to prove
// that no path leaks one.
func (b *Buffers) ReadOutstanding() int64 { return b.read.Outstanding() }

func (c *Config) withDefaults() *Config {
	d := *c
	if d.MaxFrameSize == 0 {
		d.MaxFrameSize = DefaultMaxFrameSize
	}
	d.MaxFrameSize = max(d.MaxFrameSize, codec.MinMaxFrameSize)
	if d.MaxReceiveSize == 0 {
		d.MaxReceiveSize = DefaultMaxReceiveSize
	}
	d.MaxReceiveSize = max(d.MaxReceiveSize, d.MaxFrameSize)
	if d.MaxInFlight <= 0 {
		d.MaxInFlight = DefaultMaxInFlight
	}
	if d.HelloTimeout <= 0 {
		d.HelloTimeout = DefaultHelloTimeout
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = DefaultWriteTimeout
	}
	if d.Linger <= 0 {
		d.Linger = DefaultLinger
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Base == nil {
		d.Base = context.Background()
	}
	if d.Observer == nil {
		d.Observer = observe.Nop{}
	}
	if d.Buffers == nil {
		d.Buffers = NewBuffers()
	}
	return &d
}
