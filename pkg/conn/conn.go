package conn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"go.uber.org/zap"
)

// Errors that end a connection without being protocol errors.
var (
	// ErrDrained: the agent is shutting down and drained the connection.
	ErrDrained = errors.New("conn: drained for shutdown")
	// ErrPeerDisconnect: HAProxy sent HAPROXY-DISCONNECT.
	ErrPeerDisconnect = errors.New("conn: HAPROXY-DISCONNECT received")
	// ErrHealthcheck: the connection was a health check, answered and closed.
	ErrHealthcheck = errors.New("conn: health check answered")
)

const (
	// minRead is the smallest read buffer, the one an idle connection
	// holds: a HELLO or a NOTIFY of a few arguments fits. Buffers double
	// when a read fills them and halve when reads stay small.
	minRead      = 1 << 10
	maxReadClass = 64 << 10
	// drainPoll is how often a draining connection checks whether it has
	// answered everything.
	drainPoll = 5 * time.Millisecond
	// helloLimit bounds frames before the HELLO is answered: HAProxy's
	// HELLO is a few hundred bytes, and a peer that has not said hello
	// must not make the reader grow a large buffer.
	helloLimit = codec.DefaultMaxFrameSize
)

// Dispatcher opens the dispatcher stage of a connection once its HELLO is
// negotiated; pkg/dispatch implements it.
type Dispatcher = pipeline.Dispatcher

// Conn is one SPOP connection. Create it with New and run it with Serve.
type Conn struct {
	nc  net.Conn
	cfg *Config
	log *zap.Logger
	d   Dispatcher

	ctx    context.Context // handlers' context: cancelled when the connection dies
	cancel context.CancelCauseFunc

	helloBy time.Time // the HELLO deadline: HelloTimeout after New

	// Owned by the reader (Serve's goroutine).
	stage pipeline.Stage // the dispatcher stage, once the HELLO is answered
	limit uint32         // the LENGTH limit of incoming frames
	batch pipeline.Batch // reused for every read: the stage borrows it
	armed bool           // a read deadline of the reader's own is set

	// unpushed counts the NOTIFYs whose ACK is not yet queued: a worker that
	// queues the last one writes it itself (see Reply).
	unpushed atomic.Int32

	out  outbox
	gate gate

	draining atomic.Bool // set by Drain
	// Stopping the reader: stopReading sets readStop and a deadline the
	// reader may not move past (a failed write stops it at once, Serve's
	// linger a little later); Drain and the idle timeout never override it.
	readStop     atomic.Bool
	stopMu       sync.Mutex
	stopDeadline time.Time
	// writeErr is set before the reader is stopped after a failed write, so
	// that the reader ends with the write's error rather than a read
	// timeout of its own.
	writeErr atomic.Pointer[error]

	sess pipeline.Session // written by the decoder at HELLO; read-only after
}

// New prepares a connection for Serve. cfg is shared, not copied per frame.
func New(nc net.Conn, cfg *Config, d Dispatcher) *Conn {
	cfg = cfg.withDefaults()
	c := &Conn{
		nc:    nc,
		cfg:   cfg,
		log:   cfg.Logger,
		d:     d,
		limit: min(cfg.MaxFrameSize, helloLimit),
		armed: true, // Serve sets the HELLO deadline
	}
	c.out.init(c)
	c.gate.max = int32(cfg.MaxInFlight)
	c.helloBy = time.Now().Add(cfg.HelloTimeout)
	c.sess.Remote = nc.RemoteAddr().String()
	c.ctx, c.cancel = context.WithCancelCause(cfg.Base)
	return c
}

// Drain asks the connection to end gracefully: it keeps answering what it
// receives until nothing is in flight, then sends AGENT-DISCONNECT status 0
// and closes. It does not wait; Serve returns when it is done.
func (c *Conn) Drain() {
	if c.draining.Swap(true) {
		return
	}
	c.wakeReader()
}

// wakeReader interrupts a read in progress so that the reader looks at its
// flags, unless a stop deadline is set (that one stands).
func (c *Conn) wakeReader() {
	if !c.readStop.Load() {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// Abort ends the connection at once: handlers' contexts are cancelled, the
// socket is closed and a reader waiting for an in-flight slot gives up.
func (c *Conn) Abort() {
	c.cancel(ErrDrained)
	c.gate.shut()
	_ = c.nc.Close()
}

// Session implements pipeline.Conn.
func (c *Conn) Session() *pipeline.Session { return &c.sess }

// Context implements pipeline.Conn.
func (c *Conn) Context() context.Context { return c.ctx }

// Acquire implements pipeline.Conn.
func (c *Conn) Acquire() bool {
	if !c.gate.acquire() {
		return false
	}
	c.unpushed.Add(1)
	return true
}

// TryAcquire implements pipeline.Conn.
func (c *Conn) TryAcquire() bool {
	if !c.gate.tryAcquire() {
		return false
	}
	c.unpushed.Add(1)
	return true
}

// Reply implements pipeline.Conn. The worker that queues the last ACK the
// connection owes writes it at once, on its own goroutine: with one NOTIFY
// in flight (HAProxy 2.6/3.0 under light load) an ACK costs no hand-off to
// a writer. When more ACKs are due, a writer goroutine takes the queue, so
// that those finishing meanwhile leave in the same write.
func (c *Conn) Reply(frame []byte) bool {
	last := c.unpushed.Add(-1) == 0
	if c.out.push(frame, true, last) {
		return true
	}
	c.gate.release(1)
	return false
}

// Forward implements pipeline.Conn.
func (c *Conn) Forward(frame []byte) bool { return c.out.push(frame, false, false) }

// InFlight returns the number of NOTIFYs received and not yet answered.
func (c *Conn) InFlight() int { return c.gate.inFlight() }

// Serve runs the connection until it ends and returns why: nil or io.EOF for
// a clean end, ErrHealthcheck, ErrPeerDisconnect, ErrDrained, or the error
// (a *codec.Error for protocol errors) that made the agent disconnect. The
// socket is closed when Serve returns, and no goroutine of the connection's
// runs any more but, on a connection that died, handlers that have not
// returned yet (their ACKs are dropped).
//
// Serve's goroutine is the reader, and runs the decoder and the dispatcher
// stage on each read; an idle connection holds no other goroutine. The
// writer runs when there is something to write (see Reply).
func (c *Conn) Serve() error {
	c.cfg.Observer.ConnOpened()
	_ = c.nc.SetReadDeadline(c.helloBy)
	err := c.readLoop()

	var last []byte // the AGENT-DISCONNECT to send, if any
	sent := codec.StatusNormal
	switch {
	case errors.Is(err, ErrDrained):
		// Graceful: everything accepted is answered; say goodbye.
		last = codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusNormal, "agent shutting down")
	case errors.Is(err, ErrHealthcheck):
		// The AGENT-HELLO is queued; nothing else to say.
	case errors.Is(err, ErrPeerDisconnect):
		last = codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusNormal, codec.StatusNormal.String())
	case peerGone(err):
		// The peer is gone: nothing can be said.
	default:
		sent = codec.StatusOf(err)
		last = codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, sent, reasonOf(err, sent))
	}
	if last != nil {
		c.cfg.Observer.DisconnectSent(sent)
	}
	drained := errors.Is(err, ErrDrained)
	if !drained {
		// Nothing more will be written: an ACK that comes later fails to
		// queue, and (async) goes out on another connection.
		c.cancel(err)
		c.gate.shut()
		c.out.close(last) // flushes what is queued, then last, and half-closes
	}
	if c.cfg.Closing != nil {
		c.cfg.Closing(c)
	}
	if c.stage != nil {
		c.stage.Close() // drained: every NOTIFY is answered by now
	}
	if drained {
		c.out.close(last)
	}
	// Read until the peer closes (or Linger passes) so that unread input
	// does not make the kernel reset the connection over our last frame.
	c.stopReading(time.Now().Add(c.cfg.Linger))
	c.linger()
	_ = c.nc.Close()
	c.cancel(err)
	c.gate.shut()
	c.logEnd(err)
	c.cfg.Observer.ConnClosed(endOf(err), sent)
	return err
}

// linger discards input until the peer closes or the stop deadline passes.
func (c *Conn) linger() {
	var buf [512]byte
	for {
		if _, err := c.nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// readLoop is the reader stage. It owns the socket's read side and the
// buffer being filled. Each read's complete frames go to the decoder (and
// through it to the dispatcher stage) as one batch, on this goroutine; the
// incomplete tail is copied into the next buffer. It returns why the
// connection must end.
func (c *Conn) readLoop() error {
	pool := &c.cfg.Buffers.read
	size := minRead
	buf := pool.Get(size)
	defer func() { buf.Release() }()
	for {
		if c.helloDone() {
			if err := c.armRead(); err != nil {
				return err
			}
		}
		n, err := c.nc.Read(buf.B[len(buf.B):cap(buf.B)])
		free := cap(buf.B) - len(buf.B)
		buf.B = buf.B[:len(buf.B)+n]
		if n > 0 {
			// Adapt the next buffer to the load: grow when a read filled the
			// buffer, shrink when reads are small.
			switch {
			case n == free && size < maxReadClass:
				size *= 2
			case n < size/8 && size > minRead:
				size /= 2
			}
		}
		if len(buf.B) >= codec.LengthPrefixLen {
			b := &c.batch
			off, need := 0, 0
			var ferr error
			for {
				frame, n, nd, e := codec.NextFrame(buf.B[off:], c.limit)
				if e != nil {
					ferr = e
					break
				}
				if frame == nil {
					need = nd
					break
				}
				b.Frames = append(b.Frames, codec.Frame{Payload: frame})
				off += n
			}
			if len(b.Frames) > 0 {
				// The frames go with this buffer; the tail moves on.
				next := pool.Get(max(size, need, len(buf.B)-off))
				next.B = append(next.B, buf.B[off:]...)
				b.Buf = buf
				buf = next
				derr := c.decode(b)
				b.Release() // the batch's reference; the stage holds its own
				if derr != nil {
					return derr
				}
			} else if need > cap(buf.B) {
				bigger := pool.Get(max(size, need))
				bigger.B = append(bigger.B, buf.B...)
				buf.Release()
				buf = bigger
			}
			if ferr != nil {
				return ferr
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) && len(buf.B) > 0:
				return io.ErrUnexpectedEOF // cut mid-frame
			case errors.Is(err, os.ErrDeadlineExceeded):
				if we := c.writeErr.Load(); we != nil {
					// Our own deadline after a failed write (e.g. EPIPE
					// from a killed HAProxy): that write says why.
					return *we
				}
				if c.readStop.Load() {
					return net.ErrClosed
				}
				if c.draining.Load() {
					if c.stage == nil {
						return ErrDrained // no HELLO yet: nothing to answer
					}
					continue // armRead decides whether the drain is done
				}
				return &codec.Error{Status: codec.StatusTimeout, Reason: "read timeout"}
			}
			return err
		}
		if len(buf.B) == cap(buf.B) {
			// Only a partial length prefix can fill a buffer without a
			// complete frame; make room.
			bigger := pool.Get(max(size, 2*cap(buf.B)))
			bigger.B = append(bigger.B, buf.B...)
			buf.Release()
			buf = bigger
		}
	}
}

func (c *Conn) helloDone() bool { return c.stage != nil }

// armRead sets the deadline of the next read once the HELLO is answered:
// none, or the idle timeout; while draining, a short poll, and the end of
// the drain once nothing is in flight. A stop deadline always stands.
func (c *Conn) armRead() error {
	var d time.Time
	switch {
	case c.draining.Load():
		if c.gate.inFlight() == 0 {
			return ErrDrained
		}
		d = time.Now().Add(drainPoll)
	case c.cfg.IdleTimeout > 0:
		d = time.Now().Add(c.cfg.IdleTimeout)
	case !c.armed:
		return nil // no deadline, and none to clear
	}
	_ = c.nc.SetReadDeadline(d) // the zero time clears the HELLO deadline
	c.armed = !d.IsZero()
	// Whoever set a flag after our loads set its deadline after ours too;
	// whoever set it before, we see now.
	if c.readStop.Load() {
		_ = c.nc.SetReadDeadline(c.stopAt())
	} else if c.draining.Load() {
		_ = c.nc.SetReadDeadline(time.Now().Add(drainPoll))
		c.armed = true
	}
	return nil
}

// stopReading bounds the reader by t, whatever the idle timeout or a drain:
// the deadline the reader must stop by, set once per cause (a failed write
// stops it at once, Serve's linger a little later). The earliest wins.
func (c *Conn) stopReading(t time.Time) {
	c.stopMu.Lock()
	if c.stopDeadline.IsZero() || t.Before(c.stopDeadline) {
		c.stopDeadline = t
	}
	t = c.stopDeadline
	c.readStop.Store(true)
	c.stopMu.Unlock()
	_ = c.nc.SetReadDeadline(t)
}

func (c *Conn) stopAt() time.Time {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	return c.stopDeadline
}

// writeFailed ends the connection after a write error: nothing more can be
// said, so handlers are cancelled and the reader is stopped.
func (c *Conn) writeFailed(err error) {
	if ce := c.log.Check(zap.DebugLevel, "write failed"); ce != nil {
		ce.Write(zap.String("remote", c.sess.Remote), zap.Error(err))
	}
	c.cancel(err)
	c.gate.shut()
	c.writeErr.Store(&err)
	c.stopReading(time.Now())
}

// rescue hands the ACKs of a batch that could not be written to
// Config.Rescue. Some may have reached the peer before the failure: HAProxy
// ignores a second ACK for the same ids.
func (c *Conn) rescue(b []byte) {
	if c.cfg.Rescue == nil {
		return
	}
	for len(b) > 0 {
		frame, n, _, err := codec.NextFrame(b, codec.MaxFrameLen)
		if err != nil || frame == nil {
			return
		}
		if frame[0] == byte(codec.FrameAck) {
			c.cfg.Rescue(c, b[:n])
		}
		b = b[n:]
	}
}

// endOf classifies why a connection ended, for the Observer.
func endOf(err error) observe.End {
	var e *codec.Error
	switch {
	case errors.Is(err, ErrHealthcheck):
		return observe.EndHealthcheck
	case errors.Is(err, ErrDrained):
		return observe.EndShutdown
	case errors.Is(err, ErrPeerDisconnect):
		return observe.EndPeerDisconnect
	case peerGone(err):
		return observe.EndNormal
	case errors.As(err, &e):
		return observe.EndProtocolError
	}
	return observe.EndIOError
}

func (c *Conn) logEnd(err error) {
	switch {
	case errors.Is(err, ErrHealthcheck):
		if ce := c.log.Check(zap.DebugLevel, "health check answered"); ce != nil {
			ce.Write(zap.String("remote", c.sess.Remote))
		}
	case peerGone(err) || errors.Is(err, ErrDrained) || errors.Is(err, ErrPeerDisconnect):
		if ce := c.log.Check(zap.DebugLevel, "connection closed"); ce != nil {
			ce.Write(zap.String("remote", c.sess.Remote), zap.String("engine_id", c.sess.EngineID), zap.NamedError("reason", err))
		}
	default:
		st := codec.StatusOf(err)
		c.log.Warn("connection closed with an error",
			zap.String("remote", c.sess.Remote),
			zap.Uint32("status", uint32(st)),
			zap.String("status_text", st.String()),
			zap.Error(err))
	}
}

// reasonOf returns the DISCONNECT message: the static reason of a
// *codec.Error, else HAProxy's text for the status. Peer bytes never go back
// to the peer.
func reasonOf(err error, st codec.Status) string {
	var e *codec.Error
	if errors.As(err, &e) && e.Reason != "" {
		return e.Reason
	}
	return st.String()
}

// peerGone reports whether err is a clean end of the connection at a frame
// boundary: EOF, a reset (HAProxy 3.1+ closes idle connections with RST),
// or our own close.
func peerGone(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || isReset(err) || errors.Is(err, net.ErrClosed)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
