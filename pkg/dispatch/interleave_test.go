package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
)

// interleaving runs one schedule of events against a dispatcher and a fake
// connection, and checks the properties every schedule must keep. The ops
// are read a byte at a time:
//
//	0: a new NOTIFY arrives (its handler blocks until released)
//	1: the oldest unreleased handler returns, setting its variable
//	2: time passes (3 ms; the deadline is 10 ms)
//	3: the connection dies (its context is cancelled, its writes fail)
//	4: a goroutine touches the context of a handler that returned: Err,
//	   Done, Value, Deadline, a derived context, context.AfterFunc
//	5: a handler that is still running derives a context and leaves a
//	   goroutine waiting on it
//
// Properties: nothing panics; no NOTIFY gets two ACKs; while the
// connection lives every NOTIFY gets one; an ACK carries its handler's
// variable only if the handler returned before the deadline, else the
// error code 3 alone; a context whose handler returned reports Canceled or
// DeadlineExceeded, with Done closed and its values; every read buffer and
// goroutine is returned (TestMain runs goleak).
func interleaving(t *testing.T, ops []byte) {
	const timeout = 10 * time.Millisecond
	var f feeder
	type call struct {
		sid      uint64
		release  chan struct{}
		ctx      context.Context
		returned chan struct{}
		early    bool // returned before its deadline
	}
	var mu sync.Mutex
	calls := map[uint64]*call{}
	var bg sync.WaitGroup
	d, err := New(Config{Timeout: timeout, ErrorVar: spoe.Var{Scope: codec.ScopeTransaction, Name: "err"},
		Handlers: map[string]spoe.Handler{"m": spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
			mu.Lock()
			c := calls[m.StreamID()]
			c.ctx = ctx
			mu.Unlock()
			<-c.release
			dl, _ := ctx.Deadline()
			mu.Lock()
			c.early = time.Now().Before(dl)
			mu.Unlock()
			act.SetInt(codec.ScopeTransaction, "h", int64(m.StreamID()))
			defer close(c.returned)
			return nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeConn(codec.CapPipelining)
	// As pkg/conn does: the connection's context derives from the base.
	c.ctx, c.cancel = context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "base"))
	in := make(chan *pipeline.Batch, len(ops)+1)
	served := make(chan struct{})
	go func() { d.Serve(c, in); close(served) }()

	var order []*call // by arrival
	released := 0
	dead := false
	var sent int
	for _, op := range ops {
		switch op % 6 {
		case 0:
			if dead || sent >= 200 {
				continue
			}
			sent++
			cl := &call{sid: uint64(sent), release: make(chan struct{}), returned: make(chan struct{})}
			mu.Lock()
			calls[cl.sid] = cl
			mu.Unlock()
			order = append(order, cl)
			in <- f.batch(spoptest.NotifyFrame(cl.sid, 1, spoptest.Msg{Name: "m"}))
		case 1:
			if released < len(order) {
				close(order[released].release)
				released++
			}
		case 2:
			time.Sleep(3 * time.Millisecond)
		case 3:
			if !dead {
				dead = true
				c.dead.Store(true)
				c.closing.Store(true)
				c.cancel()
				close(in)
			}
		case 4, 5:
			for _, cl := range order {
				select {
				case <-cl.returned:
				default:
					if op%6 == 5 {
						mu.Lock()
						ctx := cl.ctx
						mu.Unlock()
						if ctx != nil {
							d2, cancel := context.WithCancel(ctx)
							bg.Add(1)
							go func() { defer bg.Done(); defer cancel(); <-d2.Done() }()
						}
					}
					continue
				}
				ctx := cl.ctx
				bg.Add(1)
				go func() {
					defer bg.Done()
					if err := ctx.Err(); !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("sid %d: stale Err %v", cl.sid, err)
					}
					select {
					case <-ctx.Done():
					default:
						t.Errorf("sid %d: stale Done open", cl.sid)
					}
					if ctx.Value(ctxKey{}) != "base" {
						t.Errorf("sid %d: stale Value %v", cl.sid, ctx.Value(ctxKey{}))
					}
					d2, cancel := context.WithTimeout(ctx, time.Hour)
					defer cancel()
					<-d2.Done()
					ran := make(chan struct{})
					context.AfterFunc(ctx, func() { close(ran) })
					<-ran
				}()
				break
			}
		}
	}
	for _, cl := range order[released:] {
		close(cl.release)
	}
	if !dead {
		close(in)
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	// Every handler that started returns now; some never started (their
	// NOTIFY was dropped by a dying connection, or answered at its
	// deadline while queued).
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Wait(wctx); err != nil {
		t.Fatal("handlers did not return")
	}
	bg.Wait()
	d.Close()

	acks := map[uint64]int{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.acks {
		fr, err := codec.DecodeFrame(b, codec.MaxFrameLen)
		if err != nil {
			t.Fatal(err)
		}
		var a codec.Ack
		if err := a.Decode(fr.Payload); err != nil {
			t.Fatal(err)
		}
		acks[fr.StreamID]++
		cl := calls[fr.StreamID]
		_, hasH := a.Action("h")
		e, hasErr := a.Action("err")
		switch {
		case hasH && !cl.early:
			t.Errorf("sid %d: a late handler's variable was sent", fr.StreamID)
		case hasH && hasErr:
			t.Errorf("sid %d: both the handler's variable and an error", fr.StreamID)
		case !hasH:
			if code, _ := e.Value.Int(); !hasErr || code != spoe.ErrCodeTimeout {
				t.Errorf("sid %d: an ACK with neither the handler's variable nor error 3", fr.StreamID)
			}
		}
	}
	for sid, n := range acks {
		if n > 1 {
			t.Errorf("sid %d: %d ACKs", sid, n)
		}
	}
	if !dead && len(acks) != len(order) {
		t.Errorf("%d NOTIFYs, %d answered, on a live connection", len(order), len(acks))
	}
	for _, cl := range order {
		if cl.ctx != nil && cl.ctx.Err() == nil {
			t.Errorf("sid %d: Err nil after return", cl.sid)
		}
	}
	if n := f.pool.Outstanding(); n != 0 {
		t.Errorf("%d read buffers not returned", n)
	}
}

type ctxKey struct{}

// FuzzInterleavings explores schedules of handler returns, deadlines,
// connection deaths and stale context use (see interleaving).
func FuzzInterleavings(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 4, 2, 2, 2, 2, 4, 1, 1})    // one in time, two late
	f.Add([]byte{0, 5, 0, 5, 3, 4, 1, 1, 4})             // the connection dies with handlers running
	f.Add([]byte{0, 2, 2, 2, 2, 0, 1, 1, 4, 4, 3, 4})    // a deadline, then death
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 4}) // a burst
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 300 {
			ops = ops[:300]
		}
		interleaving(t, ops)
	})
}

// TestInterleavingsRandom runs random schedules: the property test the
// fuzz target's seeds do not replace.
func TestInterleavingsRandom(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	state := uint64(seed)
	next := func() byte { // xorshift: reproducible from the logged seed
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return byte(state)
	}
	for i := range n {
		ops := make([]byte, 10+int(next())%40)
		for j := range ops {
			ops[j] = next()
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { interleaving(t, ops) })
	}
}
