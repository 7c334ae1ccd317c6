package conn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
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
	rxQueue      = 4    // batches between reader and decoder
	dxQueue      = 4    // batches between decoder and dispatcher
	initialRead  = 4096 // first read buffer; grows under load
	maxReadClass = 64 << 10
)

// Conn is one SPOP connection. Create it with New and run it with Serve.
type Conn struct {
	nc  net.Conn
	cfg *Config
	log *zap.Logger
	d   Dispatcher

	ctx    context.Context // handlers' context: cancelled when the connection dies
	cancel context.CancelCauseFunc

	helloBy   time.Time     // the HELLO deadline: HelloTimeout after New
	limit     atomic.Uint32 // the reader's LENGTH limit; set by the decoder after HELLO
	helloDone atomic.Bool   // set by the decoder once the HELLO is answered

	rx      chan *pipeline.Batch // reader -> decoder; closed by the reader
	readErr error                // written by the reader before closing rx
	// writeErr is set by the writer before it unblocks the reader with a
	// read deadline of now, so that the reader ends with the write's error
	// rather than a read timeout of its own.
	writeErr atomic.Pointer[error]
	stopRead chan struct{} // closed by Serve to stop the reader's sends
	// readStop is set once a deadline to stop reading is set
	// (stopReading); the idle timeout then no longer moves the deadline.
	readStop     atomic.Bool
	stopMu       sync.Mutex
	stopDeadline time.Time

	out        *outbox
	gate       gate
	writerDone chan struct{}

	drain     chan struct{} // closed by Drain
	drainOnce sync.Once

	failed   chan struct{} // closed by Fail, after failErr is set
	failErr  error
	failOnce sync.Once

	sess    pipeline.Session // written by the decoder before the dispatcher starts; read-only after
	batches sync.Pool        // *pipeline.Batch
}

// New prepares a connection for Serve. cfg is shared, not copied per frame.
func New(nc net.Conn, cfg *Config, d Dispatcher) *Conn {
	cfg = cfg.withDefaults()
	c := &Conn{
		nc:         nc,
		cfg:        cfg,
		log:        cfg.Logger,
		d:          d,
		rx:         make(chan *pipeline.Batch, rxQueue),
		stopRead:   make(chan struct{}),
		out:        newOutbox(cfg.WriteBuffers, cfg.Observer),
		writerDone: make(chan struct{}),
		drain:      make(chan struct{}),
		failed:     make(chan struct{}),
	}
	c.gate.max = cfg.MaxInFlight
	c.helloBy = time.Now().Add(cfg.HelloTimeout)
	c.limit.Store(cfg.MaxFrameSize)
	c.sess.Remote = nc.RemoteAddr().String()
	c.ctx, c.cancel = context.WithCancelCause(cfg.Base)
	return c
}

// Drain asks the connection to end gracefully: it stops taking NOTIFYs,
// answers the ones it has, sends AGENT-DISCONNECT status 0 and closes. It
// does not wait; Serve returns when it is done.
func (c *Conn) Drain() { c.drainOnce.Do(func() { close(c.drain) }) }

// Abort ends the connection at once: handlers' contexts are cancelled and
// the socket is closed.
func (c *Conn) Abort() {
	c.cancel(ErrDrained)
	_ = c.nc.Close()
}

// Session implements pipeline.Conn.
func (c *Conn) Session() *pipeline.Session { return &c.sess }

// Context implements pipeline.Conn.
func (c *Conn) Context() context.Context { return c.ctx }

// Acquire implements pipeline.Conn.
func (c *Conn) Acquire() bool { return c.gate.acquire() }

// Reply implements pipeline.Conn.
func (c *Conn) Reply(frame []byte) bool {
	if c.out.push(frame, true) {
		return true
	}
	c.gate.release(1)
	return false
}

// Forward implements pipeline.Conn.
func (c *Conn) Forward(frame []byte) bool { return c.out.push(frame, false) }

// InFlight returns the number of NOTIFYs received and not yet answered.
func (c *Conn) InFlight() int { return c.gate.inFlight() }

// Serve runs the connection until it ends and returns why: nil or io.EOF for
// a clean end, ErrHealthcheck, ErrPeerDisconnect, ErrDrained, or the error
// (a *codec.Error for protocol errors) that made the agent disconnect. The
// socket is closed and every goroutine started for it has exited when Serve
// returns.
func (c *Conn) Serve() error {
	c.cfg.Observer.ConnOpened()
	_ = c.nc.SetReadDeadline(c.helloBy)
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	go func() {
		defer readerDone.Done()
		c.readLoop()
	}()
	go c.writeLoop()

	dispatchIn := make(chan *pipeline.Batch, dxQueue)
	var dispatcherDone chan struct{}
	startDispatcher := func() {
		dispatcherDone = make(chan struct{})
		go func() {
			defer close(dispatcherDone)
			c.d.Serve(c, dispatchIn)
		}()
	}

	err := c.decodeLoop(dispatchIn, startDispatcher)

	var last []byte // the AGENT-DISCONNECT to send, if any
	sent := codec.StatusNormal
	switch {
	case errors.Is(err, ErrDrained):
		// Graceful: answer what was accepted, then say goodbye.
		close(dispatchIn)
		if dispatcherDone != nil {
			<-dispatcherDone
		}
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
	if !errors.Is(err, ErrDrained) {
		c.cancel(err)
		c.gate.shut()
		close(dispatchIn)
	}
	c.out.close(last)
	if c.cfg.Closing != nil {
		c.cfg.Closing(c)
	}
	<-c.writerDone
	// Read until the peer closes (or Linger passes) so that unread input
	// does not make the kernel reset the connection over our last frame.
	c.stopReading(time.Now().Add(c.cfg.Linger))
	close(c.stopRead)
	for b := range c.rx {
		c.putBatch(b)
	}
	readerDone.Wait()
	_ = c.nc.Close()
	c.cancel(err)
	c.gate.shut()
	if dispatcherDone != nil {
		<-dispatcherDone
	}
	c.logEnd(err)
	c.cfg.Observer.ConnClosed(endOf(err), sent)
	return err
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

func (c *Conn) getBatch() *pipeline.Batch {
	if v := c.batches.Get(); v != nil {
		return v.(*pipeline.Batch)
	}
	return &pipeline.Batch{Frames: make([]codec.Frame, 0, 16), Pool: &c.batches}
}

func (c *Conn) putBatch(b *pipeline.Batch) { b.Recycle() }

// Fail implements pipeline.Conn.
func (c *Conn) Fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failed)
	})
}

// readLoop is the reader stage. It owns the socket's read side and the
// buffer being filled. Each read's complete frames go to the decoder as one
// batch, which takes the batch's reference to the buffer; the incomplete
// tail is copied into the next buffer. It exits on a read error (recorded in
// readErr) or when stopRead is closed, and closes rx.
func (c *Conn) readLoop() {
	defer close(c.rx)
	pool := c.cfg.ReadBuffers
	size := initialRead
	buf := pool.Get(size)
	defer func() { buf.Release() }()
	for {
		if c.cfg.IdleTimeout > 0 && c.helloDone.Load() {
			// Until the HELLO is answered the HELLO deadline holds. The
			// idle deadline never overrides a deadline set to stop the
			// reader (a failed write, or Serve's linger): those set
			// readStop first and the deadline after, so if this load
			// misses the flag, their deadline lands after ours.
			_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout))
			if c.readStop.Load() {
				_ = c.nc.SetReadDeadline(c.stopAt())
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
			case n < size/8 && size > initialRead:
				size /= 2
			}
		}
		if len(buf.B) >= codec.LengthPrefixLen {
			b := c.getBatch()
			off, need := 0, 0
			var ferr error
			limit := c.limit.Load()
			for {
				frame, n, nd, e := codec.NextFrame(buf.B[off:], limit)
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
				// Hand the frames over with this buffer; move the tail.
				next := pool.Get(max(size, need, len(buf.B)-off))
				next.B = append(next.B, buf.B[off:]...)
				b.Buf = buf
				buf = next
				select {
				case c.rx <- b: // ownership of b and its buffer reference passes to the decoder
				case <-c.stopRead:
					c.putBatch(b)
					c.readErr = net.ErrClosed
					return
				}
			} else {
				c.batches.Put(b)
				if need > cap(buf.B) {
					bigger := pool.Get(max(size, need))
					bigger.B = append(bigger.B, buf.B...)
					buf.Release()
					buf = bigger
				}
			}
			if ferr != nil {
				c.readErr = ferr
				return
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) && len(buf.B) > 0:
				err = io.ErrUnexpectedEOF // cut mid-frame
			case errors.Is(err, os.ErrDeadlineExceeded):
				if we := c.writeErr.Load(); we != nil {
					// Our own deadline after a failed write (e.g. EPIPE
					// from a killed HAProxy): that write says why.
					err = *we
				} else {
					err = &codec.Error{Status: codec.StatusTimeout, Reason: "read timeout"}
				}
			}
			c.readErr = err
			return
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

// writeLoop is the writer stage. It owns the socket's write side: it takes
// everything queued in the outbox and writes it with one call under a write
// deadline, then releases the in-flight slots of the ACKs it wrote. It exits
// once the outbox is closed and empty, half-closing the socket.
func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	failed := false
	for {
		<-c.out.wake
		// Yield once: workers that are finishing ACKs right now get to
		// queue them, and they leave in this write instead of the next.
		runtime.Gosched()
		buf, slots, closed := c.out.take()
		if buf != nil {
			if !failed {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
				if _, err := c.nc.Write(buf.B); err != nil {
					failed = true
					c.writeFailed(err)
				}
			}
			if failed {
				// Every ACK that could not be written, in this batch or
				// in any queued before the outbox closed, is rescued.
				c.rescue(buf.B)
			}
			c.cfg.WriteBuffers.Put(buf)
		}
		c.gate.release(slots)
		if closed {
			// close() appended the last frame before setting closed, so
			// this take got everything.
			if !failed {
				if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}
			return
		}
	}
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

// writeFailed ends the connection after a write error: nothing more can be
// said, so handlers are cancelled and the reader is unblocked.
func (c *Conn) writeFailed(err error) {
	if ce := c.log.Check(zap.DebugLevel, "write failed"); ce != nil {
		ce.Write(zap.String("remote", c.sess.Remote), zap.Error(err))
	}
	c.out.close(nil)
	c.cancel(err)
	c.gate.shut()
	c.writeErr.Store(&err)
	c.stopReading(time.Now())
}

// stopReading bounds the reader by t, whatever the idle timeout: the
// deadline the reader must stop by, set once per cause (a failed write
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
