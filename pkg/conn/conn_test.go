package conn

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoDispatcher answers every NOTIFY at once with an ACK carrying pad
// bytes of actions (none by default).
type echoDispatcher struct {
	frames atomic.Int32
	pad    int
}

// stageFunc is a pipeline.Stage that runs dispatch on each batch.
type stageFunc func(b *pipeline.Batch) error

func (f stageFunc) Dispatch(b *pipeline.Batch) error { return f(b) }
func (f stageFunc) Close()                           {}

func (d *echoDispatcher) Open(c pipeline.Conn) pipeline.Stage {
	var buf, acts []byte
	if d.pad > 0 {
		acts, _ = codec.AppendSetVar(nil, codec.ScopeTransaction, "pad", codec.Binary(make([]byte, d.pad)))
	}
	return stageFunc(func(b *pipeline.Batch) error {
		for _, f := range b.Frames {
			d.frames.Add(1)
			if f.Type == codec.FrameNotify && f.Flags.Fin() && c.Acquire() {
				buf = codec.AppendAck(buf[:0], f.StreamID, f.FrameID, acts)
				c.Reply(buf)
			}
		}
		return nil
	})
}

// serveOne accepts one connection on loopback and serves it with cfg; it
// returns the client and a channel that yields Serve's result.
func serveOne(t *testing.T, cfg *Config, d Dispatcher) (*spoptest.Client, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		_ = l.Close() // after Accept: closing earlier would reset the pending connection
		if err != nil {
			res <- err
			return
		}
		res <- New(nc, cfg, d).Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	t.Cleanup(func() {
		_ = c.NC.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return c, res
}

func TestSplitAtEveryByte(t *testing.T) {
	stream := spoptest.HelloFrame("pipelining", 16380)
	for i := range 3 {
		stream = append(stream, spoptest.NotifyFrame(uint64(i+1), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("x", codec.String("some value"))}})...)
	}
	c, _ := serveOne(t, &Config{}, &echoDispatcher{})
	for _, b := range stream {
		c.Write([]byte{b})
	}
	require.Equal(t, codec.FrameAgentHello, c.ReadFrame().Type)
	for i := range 3 {
		ack := c.ReadAck()
		assert.Equal(t, uint64(i+1), ack.StreamID)
	}
}

func TestManyFramesPerRead(t *testing.T) {
	var stream []byte
	for i := range 500 {
		stream = append(stream, spoptest.NotifyFrame(uint64(i), 1, spoptest.Msg{Name: "m"})...)
	}
	pool := NewBuffers()
	c, res := serveOne(t, &Config{Buffers: pool, MaxInFlight: 1000}, &echoDispatcher{})
	c.Hello("pipelining", 16380)
	c.Write(stream)
	seen := map[uint64]bool{}
	for range 500 {
		seen[c.ReadAck().StreamID] = true
	}
	assert.Len(t, seen, 500)
	require.NoError(t, c.NC.Close())
	require.ErrorIs(t, <-res, io.EOF) // a clean end at a frame boundary
	assert.Zero(t, pool.ReadOutstanding(), "a read buffer was not returned")
}

// TestFramesUpToTheOffer: a frame larger than the size the agent answered
// but within HAProxy's offer is read (HAProxy 3.1.0 sends such frames);
// one over the offer, or over MaxReceiveSize, ends the connection with
// status 3.
func TestFramesUpToTheOffer(t *testing.T) {
	notify := func(n int) []byte {
		return codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, make([]byte, n))
	}
	t.Run("within the offer", func(t *testing.T) {
		d := &echoDispatcher{}
		c, _ := serveOne(t, &Config{MaxFrameSize: 4096}, d)
		require.EqualValues(t, 4096, c.Hello("pipelining", 16380).MaxFrameSize)
		c.Write(notify(12000))
		assert.Equal(t, uint64(1), c.ReadAck().StreamID)
	})
	t.Run("over MaxReceiveSize", func(t *testing.T) {
		c, res := serveOne(t, &Config{MaxFrameSize: 4096, MaxReceiveSize: 8192}, &echoDispatcher{})
		c.Hello("pipelining", 65532)
		c.Write(notify(12000))
		assert.Equal(t, codec.StatusFrameTooBig, c.ReadDisconnect().Status)
		assert.Equal(t, codec.StatusFrameTooBig, codec.StatusOf(<-res))
	})
}

func TestDecoderStatuses(t *testing.T) {
	// Over HAProxy's offer (16380), not only over the answer (4096).
	big := codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, make([]byte, 16380))
	for _, tc := range []struct {
		name   string
		frames [][]byte
		status codec.Status
	}{
		{"second HELLO", [][]byte{spoptest.HelloFrame("", 16380)}, codec.StatusInvalid},
		{"unknown type on stream 0", [][]byte{codec.AppendFrame(nil, codec.Header{Type: 42, Flags: codec.FlagFin}, nil)}, codec.StatusInvalid},
		{"ACK from HAProxy on stream 0", [][]byte{codec.AppendAck(nil, 0, 0, nil)}, codec.StatusInvalid},
		{"frame over HAProxy's offer", [][]byte{big}, codec.StatusFrameTooBig},
		{"LENGTH 2^32-1", [][]byte{{0xff, 0xff, 0xff, 0xff, 3}}, codec.StatusFrameTooBig},
		{"LENGTH 6", [][]byte{{0, 0, 0, 6, 3, 0, 0, 0, 1, 1}}, codec.StatusInvalid},
		{"truncated stream-id", [][]byte{{0, 0, 0, 7, 3, 0, 0, 0, 1, 0xf0, 0x80}}, codec.StatusInvalid},
		{"fragment without fragmentation", [][]byte{codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, StreamID: 1, FrameID: 1}, nil)}, codec.StatusFragNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &echoDispatcher{}
			c, res := serveOne(t, &Config{MaxFrameSize: 4096}, d)
			h := c.Hello("pipelining", 16380)
			require.EqualValues(t, 4096, h.MaxFrameSize)
			// Unknown types on a stream are ignored, not fatal.
			c.Write(codec.AppendFrame(nil, codec.Header{Type: 42, Flags: codec.FlagFin, StreamID: 9, FrameID: 1}, []byte("x")))
			for _, f := range tc.frames {
				c.Write(f)
			}
			dc := c.ReadDisconnect()
			assert.Equal(t, tc.status, dc.Status, "%q", dc.Message)
			c.ExpectClosed()
			require.NoError(t, c.NC.Close()) // else Serve lingers, waiting for us to close
			var e *codec.Error
			require.ErrorAs(t, <-res, &e)
			assert.Equal(t, tc.status, e.Status)
		})
	}
	t.Run("LENGTH equal to the negotiated size", func(t *testing.T) {
		c, _ := serveOne(t, &Config{MaxFrameSize: 4096}, &echoDispatcher{})
		c.Hello("pipelining", 16380)
		hdr := codec.AppendHeader(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1})
		payload := make([]byte, 4096-len(hdr))
		p := append([]byte(nil), payload...)
		// A valid message list filling the frame: one message whose single
		// binary arg takes the rest.
		p = p[:0]
		p = codec.AppendString(p, "m")
		p = append(p, 1, 0, byte(codec.TypeBinary))
		rest := len(payload) - len(p) - 2
		p = codec.AppendVarint(p, uint64(rest))
		p = append(p, make([]byte, len(payload)-len(p))...)
		f := codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, p)
		require.Len(t, f, 4+4096)
		c.Write(f)
		assert.Equal(t, uint64(1), c.ReadAck().StreamID)
	})
}

func TestTimeouts(t *testing.T) {
	t.Run("HELLO deadline", func(t *testing.T) {
		c, res := serveOne(t, &Config{HelloTimeout: 50 * time.Millisecond}, &echoDispatcher{})
		c.Write([]byte{0, 0}) // a slow start, then nothing
		assert.Equal(t, codec.StatusTimeout, c.ReadDisconnect().Status)
		c.ExpectClosed()
		assert.Equal(t, codec.StatusTimeout, codec.StatusOf(<-res))
	})
	t.Run("idle", func(t *testing.T) {
		c, res := serveOne(t, &Config{IdleTimeout: 50 * time.Millisecond}, &echoDispatcher{})
		c.Hello("pipelining", 16380)
		assert.Equal(t, codec.StatusTimeout, c.ReadDisconnect().Status)
		c.ExpectClosed()
		assert.Equal(t, codec.StatusTimeout, codec.StatusOf(<-res))
	})
	t.Run("peer that stops reading", func(t *testing.T) {
		// HAProxy's side keeps sending and never reads: the writer's
		// deadline ends the connection instead of blocking forever.
		// Big ACKs fill the socket buffers (megabytes on loopback) quickly.
		c, res := serveOne(t, &Config{WriteTimeout: 100 * time.Millisecond, MaxInFlight: 1 << 20}, &echoDispatcher{pad: 8000})
		c.Hello("pipelining", 16380)
		frame := spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})
		burst := make([]byte, 0, 1000*len(frame))
		for range 1000 {
			burst = append(burst, frame...)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			_ = c.NC.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.NC.Write(burst); err != nil {
				break
			}
		}
		select {
		case err := <-res:
			assert.True(t, errors.Is(err, net.ErrClosed) || codec.StatusOf(err) != codec.StatusNormal || err == nil, "%v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end")
		}
	})
}

func TestDrain(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	conns := make(chan *Conn, 1)
	res := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			res <- err
			return
		}
		c := New(nc, &Config{}, &echoDispatcher{})
		conns <- c
		res <- c.Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	assert.Equal(t, uint64(1), c.ReadAck().StreamID)
	(<-conns).Drain()
	assert.Equal(t, codec.StatusNormal, c.ReadDisconnect().Status)
	c.ExpectClosed()
	require.ErrorIs(t, <-res, ErrDrained)
}

func TestGate(t *testing.T) {
	g := gate{max: 2}
	require.True(t, g.acquire())
	require.True(t, g.acquire())
	got := make(chan bool)
	go func() { got <- g.acquire() }()
	select {
	case <-got:
		t.Fatal("acquire past the limit did not block")
	case <-time.After(20 * time.Millisecond):
	}
	g.release(1)
	require.True(t, <-got)
	go func() { got <- g.acquire() }()
	g.shut()
	require.False(t, <-got)
	require.False(t, g.acquire())
}

// epipeAfter fails every write after the first n with EPIPE, as a socket
// does once the peer (a SIGKILLed HAProxy) is gone.
type epipeAfter struct {
	net.Conn
	n atomic.Int32
}

func (c *epipeAfter) Write(b []byte) (int, error) {
	if c.n.Add(-1) < 0 {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
	return c.Conn.Write(b)
}

// TestWriteFailureIsNotAReadTimeout: when a write fails, the writer unblocks
// the reader with a read deadline of now; the connection must then end with
// the write's error (a peer gone, logged at debug), not as a read timeout
// (status 2, logged as a warning). HAProxy killed with -9 under load
// showed it (TestE2E_KillAndRestart).
func TestWriteFailureIsNotAReadTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	res := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		_ = l.Close()
		if err != nil {
			res <- err
			return
		}
		w := &epipeAfter{Conn: nc}
		w.n.Store(1) // the AGENT-HELLO goes through, the first ACK fails
		res <- New(w, &Config{}, &echoDispatcher{}).Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	defer c.NC.Close()
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	select {
	case err := <-res:
		require.ErrorIs(t, err, syscall.EPIPE)
		assert.NotEqual(t, codec.StatusTimeout, codec.StatusOf(err), "%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end")
	}
}

// holdThenFail lets the first write through (the AGENT-HELLO), holds the
// second until release is closed, then fails it and every later one with
// EPIPE, or, with succeed, lets them all through.
type holdThenFail struct {
	net.Conn
	succeed bool
	writes  atomic.Int32
	holding chan struct{} // closed when the second write starts
	release chan struct{}
}

func (c *holdThenFail) Write(b []byte) (int, error) {
	if c.writes.Add(1) == 1 {
		return c.Conn.Write(b)
	}
	select {
	case <-c.holding:
	default:
		close(c.holding)
	}
	<-c.release
	if c.succeed {
		return c.Conn.Write(b)
	}
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
}

// countingDispatcher is echoDispatcher that counts the ACKs it queued.
type countingDispatcher struct {
	replied atomic.Int32
	wg      sync.WaitGroup
}

func (d *countingDispatcher) Open(c pipeline.Conn) pipeline.Stage {
	return closeFunc{stageFunc(func(b *pipeline.Batch) error {
		for _, f := range b.Frames {
			if f.Type == codec.FrameNotify && f.Flags.Fin() && c.Acquire() {
				// Replied from another goroutine, as a worker does: a
				// write held up must not hold up the reader.
				d.wg.Add(1)
				go func() {
					defer d.wg.Done()
					c.Reply(codec.AppendAck(nil, f.StreamID, f.FrameID, nil))
					d.replied.Add(1)
				}()
			}
		}
		return nil
	}), d.wg.Wait}
}

// closeFunc is a Stage whose Close waits with close.
type closeFunc struct {
	stageFunc
	close func()
}

func (c closeFunc) Close() { c.close() }

// TestFailedWriteRescuesEveryACK: ACKs queued while a write is failing are
// handed to Rescue (async: another connection of the engine sends them),
// not only those of the batch that failed. Before the fix, the ACKs taken
// after the failure went back to the pool unsent.
func TestFailedWriteRescuesEveryACK(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &holdThenFail{holding: make(chan struct{}), release: make(chan struct{})}
	var mu sync.Mutex
	var rescued []uint64
	d := &countingDispatcher{}
	res := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		_ = l.Close()
		if err != nil {
			res <- err
			return
		}
		w.Conn = nc
		cfg := &Config{Rescue: func(_ *Conn, frame []byte) {
			f, err := codec.ParseFrame(frame[codec.LengthPrefixLen:])
			if err == nil {
				mu.Lock()
				rescued = append(rescued, f.StreamID)
				mu.Unlock()
			}
		}}
		res <- New(w, cfg, d).Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	defer c.NC.Close()
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	<-w.holding // the first ACK's write is in progress
	for sid := uint64(2); sid <= 5; sid++ {
		c.Notify(sid, 1, spoptest.Msg{Name: "m"})
	}
	// 4 queued; the 5th Reply is the one writing the first ACK.
	require.Eventually(t, func() bool { return d.replied.Load() == 4 }, 5*time.Second, time.Millisecond)
	close(w.release) // the write fails; ACKs 2-5 wait in the outbox
	select {
	case err := <-res:
		require.ErrorIs(t, err, syscall.EPIPE)
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []uint64{1, 2, 3, 4, 5}, rescued)
}

// TestIdleTimeoutDoesNotKeepAFailedConnectionReading: after a failed write
// the reader must stop at once, even with an idle timeout and a peer that
// keeps sending. The reader used to re-arm the idle deadline on every read,
// overriding the writer's "stop now", so the connection read on for as
// long as the peer wrote.
func TestIdleTimeoutDoesNotKeepAFailedConnectionReading(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &holdThenFail{holding: make(chan struct{}), release: make(chan struct{})}
	close(w.release) // every write after the HELLO fails at once
	res := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		_ = l.Close()
		if err != nil {
			res <- err
			return
		}
		w.Conn = nc
		res <- New(w, &Config{IdleTimeout: 10 * time.Second}, &countingDispatcher{}).Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() { // a peer that keeps sending as fast as it can, never reading
		defer close(sent)
		one := spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})
		var frame []byte
		for range 100 {
			frame = append(frame, one...)
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = c.NC.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.NC.Write(frame); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-sent; _ = c.NC.Close() }()
	select {
	case err := <-res:
		require.ErrorIs(t, err, syscall.EPIPE)
	case <-time.After(3 * time.Second):
		t.Fatal("the connection kept reading after its write failed")
	}
}

// TestOneWritePerBatch: the writer takes everything queued since its last
// write and sends it with one write call. While one write is in progress,
// 49 ACKs are queued; they leave together in the next call: three calls in
// all (the AGENT-HELLO, the first ACK, the other 49).
func TestOneWritePerBatch(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &holdThenFail{succeed: true, holding: make(chan struct{}), release: make(chan struct{})}
	d := &countingDispatcher{}
	res := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		_ = l.Close()
		if err != nil {
			res <- err
			return
		}
		w.Conn = nc
		res <- New(w, &Config{}, d).Serve()
	}()
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	<-w.holding
	var burst []byte
	for sid := uint64(2); sid <= 50; sid++ {
		burst = append(burst, spoptest.NotifyFrame(sid, 1, spoptest.Msg{Name: "m"})...)
	}
	c.Write(burst)
	// 49 queued; the 50th Reply is the one writing the first ACK.
	require.Eventually(t, func() bool { return d.replied.Load() == 49 }, 5*time.Second, time.Millisecond)
	close(w.release)
	for range 50 {
		c.ReadAck()
	}
	assert.Equal(t, int32(3), w.writes.Load(), "write calls: HELLO, the first ACK, then the 49 queued meanwhile")
	_ = c.NC.Close()
	<-res
}
