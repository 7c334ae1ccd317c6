package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/bufpool"
	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// fakeConn records what the dispatcher sends back.
type fakeConn struct {
	sess    pipeline.Session
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	acks    [][]byte
	fwd     [][]byte
	failed  error
	dead    atomic.Bool // Reply and Forward fail
	closing atomic.Bool // Acquire fails
	slots   atomic.Int32
	got     chan struct{}
}

func newFakeConn(caps codec.Capabilities) *fakeConn {
	c := &fakeConn{sess: pipeline.Session{EngineID: "e1", MaxFrameSize: 16380, Capabilities: caps}, got: make(chan struct{}, 1024)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

func (c *fakeConn) Session() *pipeline.Session { return &c.sess }
func (c *fakeConn) Context() context.Context   { return c.ctx }
func (c *fakeConn) Acquire() bool {
	if c.closing.Load() {
		return false
	}
	c.slots.Add(1)
	return true
}
func (c *fakeConn) TryAcquire() bool { return c.Acquire() }
func (c *fakeConn) Reply(frame []byte) bool {
	c.slots.Add(-1)
	if c.dead.Load() {
		return false
	}
	c.mu.Lock()
	c.acks = append(c.acks, append([]byte(nil), frame...))
	c.mu.Unlock()
	c.got <- struct{}{}
	return true
}
func (c *fakeConn) Forward(frame []byte) bool {
	if c.dead.Load() {
		return false
	}
	c.mu.Lock()
	c.fwd = append(c.fwd, append([]byte(nil), frame...))
	c.mu.Unlock()
	c.got <- struct{}{}
	return true
}
func (c *fakeConn) Fail(err error) {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = err
	}
	c.mu.Unlock()
}
func (c *fakeConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// feeder builds batches on a counted buffer pool, as the reader does.
type feeder struct {
	pool bufpool.Pool
}

func (f *feeder) batch(frames ...[]byte) *pipeline.Batch {
	size := 0
	for _, fr := range frames {
		size += len(fr)
	}
	buf := f.pool.Get(size)
	b := &pipeline.Batch{Buf: buf}
	for _, fr := range frames {
		start := len(buf.B)
		buf.B = append(buf.B, fr...)
		parsed, err := codec.DecodeFrame(buf.B[start:], codec.MaxFrameLen)
		if err != nil {
			panic(err)
		}
		b.Frames = append(b.Frames, parsed)
	}
	return b
}

func newDispatcher(t *testing.T, cfg Config) *Dispatcher {
	t.Helper()
	d, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return d
}

// serve runs d.Serve for c over the given batches and waits for it.
func serve(d *Dispatcher, c *fakeConn, batches ...*pipeline.Batch) {
	in := make(chan *pipeline.Batch, len(batches))
	for _, b := range batches {
		in <- b
	}
	close(in)
	d.Serve(c, in)
}

func decodeAck(t *testing.T, frame []byte) (codec.Frame, codec.Ack) {
	t.Helper()
	f, err := codec.DecodeFrame(frame, codec.MaxFrameLen)
	require.NoError(t, err)
	require.Equal(t, codec.FrameAck, f.Type)
	var a codec.Ack
	require.NoError(t, a.Decode(f.Payload))
	return f, a
}

func frag(t codec.FrameType, flags codec.Flags, sid, fid uint64, p []byte) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: t, Flags: flags, StreamID: sid, FrameID: fid}, p)
}

func TestRoutingAndBufferBalance(t *testing.T) {
	var f feeder
	d := newDispatcher(t, Config{Handlers: map[string]spoe.Handler{
		"a": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
			n, _ := m.Int("n")
			act.SetInt(codec.ScopeTransaction, "a", n)
			return nil
		}),
	}})
	c := newFakeConn(codec.CapPipelining)
	var frames [][]byte
	for i := range 50 {
		frames = append(frames, spoptest.NotifyFrame(uint64(i), 1,
			spoptest.Msg{Name: "skipped"},
			spoptest.Msg{Name: "a", Args: []codec.Arg{spoptest.A("n", codec.Int64(int64(i)))}}))
	}
	serve(d, c, f.batch(frames[:25]...), f.batch(frames[25:]...))
	require.Len(t, c.acks, 50)
	for _, ack := range c.acks {
		fr, a := decodeAck(t, ack)
		require.Len(t, a.Actions, 1)
		n, _ := a.Actions[0].Value.Int()
		assert.Equal(t, fr.StreamID, uint64(n))
	}
	assert.Zero(t, f.pool.Outstanding(), "a read buffer was not returned")
	assert.Zero(t, c.slots.Load(), "an in-flight slot was not released")
	assert.NoError(t, c.failure())
}

func TestReassemblyAcrossBatches(t *testing.T) {
	var f feeder
	var got []byte
	d := newDispatcher(t, Config{Handlers: map[string]spoe.Handler{
		"big": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
			b, _ := m.Bytes("body")
			got = append([]byte(nil), b...)
			return nil
		}),
	}})
	body := make([]byte, 5000)
	for i := range body {
		body[i] = byte(i)
	}
	p := spoptest.NotifyPayload(spoptest.Msg{Name: "big", Args: []codec.Arg{spoptest.A("body", codec.Binary(body))}})
	c := newFakeConn(codec.CapPipelining | codec.CapFragmentation)
	// Cut inside the message name, inside the length varint, inside the body.
	serve(d, c,
		f.batch(frag(codec.FrameNotify, 0, 3, 2, p[:2])),
		f.batch(frag(codec.FrameUnset, 0, 3, 2, p[2:8]), frag(codec.FrameUnset, 0, 3, 2, p[8:3000])),
		f.batch(frag(codec.FrameUnset, codec.FlagFin, 3, 2, p[3000:])))
	require.NoError(t, c.failure())
	require.Len(t, c.acks, 1)
	fr, _ := decodeAck(t, c.acks[0])
	assert.Equal(t, uint64(3), fr.StreamID)
	assert.Equal(t, uint64(2), fr.FrameID)
	assert.Equal(t, body, got)
	assert.Zero(t, f.pool.Outstanding())
}

func TestProtocolErrors(t *testing.T) {
	p := spoptest.NotifyPayload(spoptest.Msg{Name: "m"})
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   error
	}{
		{"malformed NOTIFY", [][]byte{frag(codec.FrameNotify, codec.FlagFin, 1, 1, []byte{5, 'a'})}, codec.ErrTruncated},
		{"unknown data type", [][]byte{frag(codec.FrameNotify, codec.FlagFin, 1, 1, []byte{1, 'm', 1, 1, 'x', 0x0c})}, codec.ErrUnknownDataType},
		{"continuation of nothing", [][]byte{frag(codec.FrameUnset, codec.FlagFin, 1, 1, p)}, ErrUnknownFragment},
		{"restart in progress", [][]byte{frag(codec.FrameNotify, 0, 1, 1, p), frag(codec.FrameNotify, 0, 1, 1, p)}, codec.ErrInterlaced},
		{"whole NOTIFY over a partial", [][]byte{frag(codec.FrameNotify, 0, 1, 1, p), frag(codec.FrameNotify, codec.FlagFin, 1, 1, p)}, codec.ErrInterlaced},
		{"past the size cap", [][]byte{frag(codec.FrameNotify, 0, 1, 1, make([]byte, 600)), frag(codec.FrameUnset, 0, 1, 1, make([]byte, 600))}, ErrMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f feeder
			d := newDispatcher(t, Config{MaxMessageSize: 1000, Handlers: map[string]spoe.Handler{
				"m": spoe.HandlerFunc(func(context.Context, *spoe.Message, *spoe.Actions) error { return nil }),
			}})
			c := newFakeConn(codec.CapFragmentation)
			serve(d, c, f.batch(tc.frames...), f.batch(spoptest.NotifyFrame(9, 9, spoptest.Msg{Name: "m"})))
			require.ErrorIs(t, c.failure(), tc.want)
			assert.Empty(t, c.acks, "nothing after a protocol error is answered")
			assert.Zero(t, f.pool.Outstanding())
		})
	}
	t.Run("too many fragmented at once", func(t *testing.T) {
		var f feeder
		d := newDispatcher(t, Config{})
		c := newFakeConn(codec.CapFragmentation)
		var frames [][]byte
		for i := range maxPartials + 1 {
			frames = append(frames, frag(codec.FrameNotify, 0, uint64(i), 1, p))
		}
		serve(d, c, f.batch(frames...))
		require.ErrorIs(t, c.failure(), ErrTooManyFragmented)
		assert.Zero(t, f.pool.Outstanding())
	})
}

func TestClosingConnectionDropsWork(t *testing.T) {
	var f feeder
	var calls atomic.Int32
	d := newDispatcher(t, Config{Handlers: map[string]spoe.Handler{
		"m": spoe.HandlerFunc(func(context.Context, *spoe.Message, *spoe.Actions) error { calls.Add(1); return nil }),
	}})
	c := newFakeConn(0)
	c.closing.Store(true)
	serve(d, c, f.batch(spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})))
	assert.Zero(t, calls.Load())
	assert.Empty(t, c.acks)
	assert.Zero(t, f.pool.Outstanding())
}

func TestAsyncForward(t *testing.T) {
	var f feeder
	release := make(chan struct{})
	d := newDispatcher(t, Config{Async: true, Handlers: map[string]spoe.Handler{
		"m": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
			<-release
			return ctx.Err() // the connection died, but async handlers keep their context
		}),
	}, ErrorVar: spoe.Var{Scope: codec.ScopeTransaction, Name: "err"}})
	c1 := newFakeConn(codec.CapAsync | codec.CapPipelining)
	c2 := newFakeConn(codec.CapAsync | codec.CapPipelining)
	in2 := make(chan *pipeline.Batch)
	done2 := make(chan struct{})
	go func() { d.Serve(c2, in2); close(done2) }()
	in1 := make(chan *pipeline.Batch, 1)
	done1 := make(chan struct{})
	go func() { d.Serve(c1, in1); close(done1) }()
	// Both connections must be registered with their engine first.
	require.Eventually(t, func() bool {
		d.engMu.Lock()
		defer d.engMu.Unlock()
		return len(d.engines["e1"]) == 2
	}, 5*time.Second, time.Millisecond)
	in1 <- f.batch(spoptest.NotifyFrame(5, 6, spoptest.Msg{Name: "m"}))
	close(in1)
	c1.dead.Store(true)
	c1.cancel()
	close(release)
	select {
	case <-c2.got:
	case <-time.After(5 * time.Second):
		t.Fatal("the ACK was not forwarded to the sibling connection")
	}
	<-done1
	close(in2)
	<-done2
	require.Len(t, c2.fwd, 1)
	fr, a := decodeAck(t, c2.fwd[0])
	assert.Equal(t, uint64(5), fr.StreamID)
	assert.Equal(t, uint64(6), fr.FrameID)
	assert.Empty(t, a.Actions, "an async handler's context is not cancelled with its connection")
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{ErrorVar: spoe.Var{Scope: 9, Name: "x"}})
	require.ErrorIs(t, err, codec.ErrBadScope)
	_, err = New(Config{ErrorVar: spoe.Var{Scope: codec.ScopeTransaction, Name: string(make([]byte, 64))}})
	require.ErrorIs(t, err, codec.ErrVarNameTooLong)
}

// TestSlowHandlerDoesNotHoldUpTheQueue: NOTIFYs of one batch share a run
// queue; a handler that blocks must not delay the ones behind it.
func TestSlowHandlerDoesNotHoldUpTheQueue(t *testing.T) {
	var f feeder
	release := make(chan struct{})
	d := newDispatcher(t, Config{Handlers: map[string]spoe.Handler{
		"slow": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error { <-release; return nil }),
		"fast": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error { return nil }),
	}})
	c := newFakeConn(codec.CapPipelining)
	frames := [][]byte{spoptest.NotifyFrame(0, 1, spoptest.Msg{Name: "slow"})}
	for i := 1; i <= 30; i++ {
		frames = append(frames, spoptest.NotifyFrame(uint64(i), 1, spoptest.Msg{Name: "fast"}))
	}
	in := make(chan *pipeline.Batch, 1)
	in <- f.batch(frames...)
	done := make(chan struct{})
	go func() { d.Serve(c, in); close(done) }()
	for range 30 {
		select {
		case <-c.got:
		case <-time.After(5 * time.Second):
			t.Fatal("fast NOTIFYs waited behind a blocked handler")
		}
	}
	close(release)
	<-c.got
	close(in)
	<-done
	require.Len(t, c.acks, 31)
	fr, _ := decodeAck(t, c.acks[30])
	assert.Equal(t, uint64(0), fr.StreamID, "the slow one answers last")
}

// TestRunQueueBounded: the run queue's memory follows the most tasks queued
// at once, however long a backlog lasts (the per-connection queue it
// replaced compacted only when it emptied, so a backlog that never drained
// grew it without bound).
func TestRunQueueBounded(t *testing.T) {
	var r ring
	tasks := make([]*task, 100)
	for i := range tasks {
		tasks[i] = &task{}
	}
	for i := range 20 {
		r.push(tasks[i])
	}
	for i := range 1_000_000 { // never empties: 20 to 21 queued
		r.push(tasks[(20+i)%100])
		require.Same(t, tasks[i%100], r.pop())
	}
	assert.Equal(t, 20, r.n)
	assert.LessOrEqual(t, len(r.buf), 64)
	for r.n < 100 {
		r.push(tasks[r.n])
	}
	assert.Equal(t, 128, len(r.buf), "it grows by doubling when full")
}

// TestManagedContextsEnd: a handler's Done closes at its deadline (through
// the deadline watch) and when its connection dies (through the session's
// one registration), with no timer or registration of its own.
func TestManagedContextsEnd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		kill    bool
		want    error
	}{
		{"deadline", 30 * time.Millisecond, false, context.DeadlineExceeded},
		{"connection death", time.Hour, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f feeder
			got := make(chan error, 1)
			started := make(chan struct{})
			d := newDispatcher(t, Config{Timeout: tc.timeout, Handlers: map[string]spoe.Handler{
				"m": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
					close(started)
					<-ctx.Done()
					got <- ctx.Err()
					return ctx.Err()
				}),
			}})
			c := newFakeConn(codec.CapPipelining)
			in := make(chan *pipeline.Batch, 1)
			in <- f.batch(spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"}))
			done := make(chan struct{})
			go func() { d.Serve(c, in); close(done) }()
			<-started
			s := time.Now()
			if tc.kill {
				c.dead.Store(true)
				c.cancel()
			}
			select {
			case err := <-got:
				assert.ErrorIs(t, err, tc.want)
				assert.Less(t, time.Since(s), tc.timeout+time.Second)
			case <-time.After(5 * time.Second):
				t.Fatal("Done did not close")
			}
			close(in)
			<-done
		})
	}
}

// TestWatchListOrder: the deadline watch list stays in deadline order when
// tasks are linked out of order (a reader that blocked for a slot after
// reading its clock).
func TestWatchListOrder(t *testing.T) {
	var l taskList
	for _, due := range []int64{10, 20, 30, 15, 5, 30, 25, 40} {
		l.insert(&task{due: due})
	}
	var got []int64
	for x := l.head; x != nil; x = x.next {
		got = append(got, x.due)
		if x.next != nil {
			require.Same(t, x, x.next.prev)
		}
	}
	assert.Equal(t, []int64{5, 10, 15, 20, 25, 30, 30, 40}, got)
	assert.Equal(t, int64(40), l.tail.due)
	l.remove(l.head)
	l.remove(l.tail)
	assert.Equal(t, int64(10), l.head.due)
	assert.Equal(t, int64(30), l.tail.due)
}
