package hctx

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type key struct{}

type otherKey struct{}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Done was not closed")
	}
}

func newCtx(parent context.Context, d time.Duration) *Ctx {
	var a Alloc
	return a.Get(parent, Now()+int64(d))
}

// TestEndStates covers how a context ends, whether Done was asked for
// before, after or never: the first cause wins and sticks.
func TestEndStates(t *testing.T) {
	base := context.WithValue(context.Background(), key{}, "v")
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		// end makes the context end; parentCancel cancels the parent.
		end  func(c *Ctx, parentCancel context.CancelFunc)
		want error
	}{
		{"finished before the deadline", time.Hour, func(c *Ctx, _ context.CancelFunc) { c.Finish() }, context.Canceled},
		{"finished after the deadline", time.Millisecond, func(c *Ctx, _ context.CancelFunc) {
			time.Sleep(5 * time.Millisecond)
			c.Finish()
		}, context.DeadlineExceeded},
		{"parent cancelled, then finished", time.Hour, func(c *Ctx, cancel context.CancelFunc) {
			cancel()
			c.Finish()
		}, context.Canceled},
		{"deadline, then parent cancelled, then finished", time.Millisecond, func(c *Ctx, cancel context.CancelFunc) {
			time.Sleep(5 * time.Millisecond)
			_ = c.Err() // observed: the deadline came first
			cancel()
			c.Finish()
		}, context.DeadlineExceeded},
	} {
		for _, doneFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/Done asked first=%v", tc.name, doneFirst), func(t *testing.T) {
				parent, cancel := context.WithCancel(base)
				defer cancel()
				c := newCtx(parent, tc.timeout)
				dl, ok := c.Deadline()
				require.True(t, ok)
				var done <-chan struct{}
				if doneFirst {
					done = c.Done()
					assert.False(t, isClosed(done) && tc.timeout == time.Hour)
				}
				tc.end(c, cancel)
				if !doneFirst {
					done = c.Done()
				}
				waitClosed(t, done)
				for range 3 {
					assert.ErrorIs(t, c.Err(), tc.want)
					assert.ErrorIs(t, context.Cause(c), tc.want)
					d2, ok := c.Deadline()
					assert.True(t, ok)
					assert.Equal(t, dl, d2, "Deadline is the same on every call")
					assert.Equal(t, "v", c.Value(key{}), "Value answers after the end")
					assert.True(t, done == c.Done(), "Done returns the same channel")
				}
			})
		}
	}
}

func TestCancelCtxKeyFound(t *testing.T) {
	require.NotNil(t, cancelCtxKey, "the context package's key was not found: context.Cause would report the connection's cause")
}

func TestLive(t *testing.T) {
	c := newCtx(context.WithValue(context.Background(), key{}, 1), time.Hour)
	assert.NoError(t, c.Err())
	assert.False(t, c.Expired())
	assert.False(t, isClosed(c.Done()))
	assert.Equal(t, 1, c.Value(key{}))
	assert.Nil(t, c.Value("other"))
	assert.Equal(t, "spoe-forge handler context", fmt.Sprint(c))
	c.Finish()
	c.Finish() // twice is fine
	assert.ErrorIs(t, c.Err(), context.Canceled)
}

func TestDeadlineFiresDone(t *testing.T) {
	c := newCtx(context.Background(), 10*time.Millisecond)
	waitClosed(t, c.Done())
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	assert.True(t, c.Expired())
	c.Finish()
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded, "Finish keeps the first cause")
}

func TestParentDeadlineComesFirst(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	pd, _ := parent.Deadline()
	c := newCtx(parent, time.Hour)
	dl, _ := c.Deadline()
	assert.WithinDuration(t, pd, dl, time.Microsecond)
	waitClosed(t, c.Done())
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
}

func TestParentCancelFiresDone(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	c := newCtx(parent, time.Hour)
	done := c.Done()
	cancel()
	waitClosed(t, done)
	assert.ErrorIs(t, c.Err(), context.Canceled)
}

func TestParentAlreadyCancelled(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	cancel()
	c := newCtx(parent, time.Hour)
	assert.ErrorIs(t, c.Err(), context.Canceled)
	assert.True(t, isClosed(c.Done()))
}

// TestDerived: every way the context package derives from a handler's
// context, used during the handler, after it, and from goroutines that
// outlive it.
func TestDerived(t *testing.T) {
	for _, tc := range []struct {
		name   string
		derive func(ctx context.Context) (context.Context, func())
		// stays is true for contexts that must not end with the parent.
		stays bool
	}{
		{"WithCancel", func(ctx context.Context) (context.Context, func()) {
			c, cancel := context.WithCancel(ctx)
			return c, cancel
		}, false},
		{"WithTimeout", func(ctx context.Context) (context.Context, func()) {
			c, cancel := context.WithTimeout(ctx, time.Hour)
			return c, cancel
		}, false},
		{"WithDeadline", func(ctx context.Context) (context.Context, func()) {
			c, cancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
			return c, cancel
		}, false},
		{"WithCancelCause", func(ctx context.Context) (context.Context, func()) {
			c, cancel := context.WithCancelCause(ctx)
			return c, func() { cancel(nil) }
		}, false},
		{"WithValue", func(ctx context.Context) (context.Context, func()) {
			return context.WithValue(ctx, otherKey{}, 1), func() {}
		}, false},
		{"WithoutCancel", func(ctx context.Context) (context.Context, func()) {
			return context.WithoutCancel(ctx), func() {}
		}, true},
		{"wrapped in an unknown type, then WithTimeout", func(ctx context.Context) (context.Context, func()) {
			c, cancel := context.WithTimeout(struct{ context.Context }{ctx}, time.Hour)
			return c, cancel
		}, false},
	} {
		t.Run(tc.name+"/cancelled with the handler", func(t *testing.T) {
			c := newCtx(context.WithValue(context.Background(), key{}, "v"), time.Hour)
			d, cancel := tc.derive(c)
			defer cancel()
			assert.NoError(t, d.Err())
			assert.Equal(t, "v", d.Value(key{}))
			c.Finish()
			if tc.stays {
				assert.NoError(t, d.Err())
				return
			}
			waitClosed(t, d.Done())
			assert.ErrorIs(t, d.Err(), context.Canceled)
		})
		t.Run(tc.name+"/derived after the handler returned", func(t *testing.T) {
			c := newCtx(context.WithValue(context.Background(), key{}, "v"), time.Hour)
			c.Finish()
			d, cancel := tc.derive(c)
			defer cancel()
			assert.Equal(t, "v", d.Value(key{}))
			if tc.stays {
				assert.NoError(t, d.Err())
				return
			}
			waitClosed(t, d.Done())
			assert.ErrorIs(t, d.Err(), context.Canceled)
		})
		t.Run(tc.name+"/cancelled by the user first", func(t *testing.T) {
			c := newCtx(context.Background(), time.Hour)
			d, cancel := tc.derive(c)
			cancel()
			c.Finish()
			_ = d.Err()
		})
	}
}

// TestDeriveStartsNoGoroutine: because Ctx has an AfterFunc method, the
// context package registers a callback with it instead of starting a
// goroutine that watches it.
func TestDeriveStartsNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	var ctxs []*Ctx
	var cancels []context.CancelFunc
	for range 200 {
		c := newCtx(context.Background(), time.Hour)
		_, cancel := context.WithTimeout(c, time.Hour)
		ctxs, cancels = append(ctxs, c), append(cancels, cancel)
	}
	assert.Less(t, runtime.NumGoroutine()-before, 10, "a goroutine per derived context")
	for i := range ctxs {
		ctxs[i].Finish()
		cancels[i]()
	}
}

func TestAfterFunc(t *testing.T) {
	t.Run("runs when the handler returns", func(t *testing.T) {
		c := newCtx(context.Background(), time.Hour)
		ran := make(chan struct{})
		stop := context.AfterFunc(c, func() { close(ran) })
		c.Finish()
		waitClosed(t, ran)
		assert.False(t, stop())
	})
	t.Run("stopped, never runs", func(t *testing.T) {
		c := newCtx(context.Background(), time.Hour)
		var ran atomic.Bool
		stop := context.AfterFunc(c, func() { ran.Store(true) })
		assert.True(t, stop())
		assert.False(t, stop())
		c.Finish()
		time.Sleep(10 * time.Millisecond)
		assert.False(t, ran.Load())
	})
	t.Run("the method: stop, and after the end", func(t *testing.T) {
		c := newCtx(context.Background(), time.Hour)
		var n atomic.Int32
		stop1 := c.AfterFunc(func() { n.Add(1) })
		stop2 := c.AfterFunc(func() { n.Add(10) })
		assert.True(t, stop2())
		c.Finish()
		assert.Equal(t, int32(1), n.Load(), "callbacks run on the goroutine that ends the context")
		assert.False(t, stop1())
		ran := make(chan struct{})
		stop3 := c.AfterFunc(func() { close(ran) })
		waitClosed(t, ran)
		assert.False(t, stop3())
	})
	t.Run("at the deadline", func(t *testing.T) {
		c := newCtx(context.Background(), 5*time.Millisecond)
		ran := make(chan struct{})
		context.AfterFunc(c, func() { close(ran) })
		waitClosed(t, ran)
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
}

// TestNested: middleware.Timeout puts a Ctx inside a Ctx.
func TestNested(t *testing.T) {
	outer := newCtx(context.WithValue(context.Background(), key{}, "v"), time.Hour)
	inner := newCtx(outer, 10*time.Millisecond)
	id, _ := inner.Deadline()
	od, _ := outer.Deadline()
	assert.True(t, id.Before(od))
	assert.Equal(t, "v", inner.Value(key{}))
	waitClosed(t, inner.Done())
	assert.ErrorIs(t, inner.Err(), context.DeadlineExceeded)
	assert.NoError(t, outer.Err(), "the inner deadline does not touch the outer context")
	inner.Finish()
	od2, _ := outer.Deadline()
	assert.Equal(t, od, od2)

	inner2 := newCtx(outer, time.Hour)
	done := inner2.Done()
	outer.Finish()
	waitClosed(t, done)
	assert.ErrorIs(t, inner2.Err(), context.Canceled)
}

func TestErrgroup(t *testing.T) {
	c := newCtx(context.Background(), time.Hour)
	g, gctx := errgroup.WithContext(c)
	boom := errors.New("boom")
	g.Go(func() error { return boom })
	g.Go(func() error {
		<-gctx.Done()
		return gctx.Err()
	})
	assert.ErrorIs(t, g.Wait(), boom)
	assert.NoError(t, c.Err(), "a group's failure does not cancel the handler's context")
	c.Finish()
}

// TestAllocNeverRepeats: a Ctx is handed out once.
func TestAllocNeverRepeats(t *testing.T) {
	var a Alloc
	seen := make(map[*Ctx]bool)
	for range 5 * slabSize {
		c := a.Get(context.Background(), Now())
		require.False(t, seen[c])
		seen[c] = true
	}
}

// TestRaces ends contexts while goroutines use them every way they can;
// run with -race.
func TestRaces(t *testing.T) {
	var a Alloc
	for i := range 300 {
		parent, cancel := context.WithCancel(context.Background())
		c := a.Get(parent, Now()+int64(time.Duration(i%3)*time.Millisecond))
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch g {
				case 0:
					d, cancel := context.WithTimeout(c, time.Millisecond)
					<-d.Done()
					cancel()
				case 1:
					stop := context.AfterFunc(c, func() {})
					_ = c.Err()
					stop()
				case 2:
					<-c.Done()
					if c.Err() == nil {
						t.Error("Done closed with a nil Err")
					}
				case 3:
					_, _ = c.Deadline()
					_ = c.Value(key{})
					_ = context.Cause(c)
				}
			}()
		}
		switch i % 3 {
		case 0:
			c.Finish()
		case 1:
			cancel()
			c.Finish()
		default:
			c.Finish()
			cancel()
		}
		wg.Wait()
		cancel()
		require.Error(t, c.Err())
	}
}

// TestManaged: a managed context arms nothing; its owner ends it. What
// ended before Done was asked for still shows.
func TestManaged(t *testing.T) {
	var a Alloc
	t.Run("the owner expires it", func(t *testing.T) {
		c := a.GetManaged(context.Background(), Now()+int64(time.Hour))
		done := c.Done()
		assert.Nil(t, c.ext.Load().timer, "no timer")
		assert.Nil(t, c.ext.Load().stop, "no registration")
		d2, cancel := context.WithCancel(c)
		defer cancel()
		c.Expire()
		waitClosed(t, done)
		waitClosed(t, d2.Done())
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
	t.Run("the owner cancels it", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		c := a.GetManaged(parent, Now()+int64(time.Hour))
		done := c.Done()
		cancel()
		assert.False(t, isClosed(done), "a managed context waits for its owner")
		assert.ErrorIs(t, c.Err(), context.Canceled, "Err still sees the parent")
		waitClosed(t, done)
		c2 := a.GetManaged(parent, Now()+int64(time.Hour))
		c2.Cancel(parent.Err())
		assert.ErrorIs(t, c2.Err(), context.Canceled)
	})
	t.Run("ended before Done was asked for", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		cancel()
		c := a.GetManaged(parent, Now()+int64(time.Hour))
		assert.True(t, isClosed(c.Done()))
		c2 := a.GetManaged(context.Background(), Now()-1)
		assert.True(t, isClosed(c2.Done()))
		assert.ErrorIs(t, c2.Err(), context.DeadlineExceeded)
	})
	t.Run("a parent deadline first: it watches itself", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		c := a.GetManaged(parent, Now()+int64(time.Hour))
		assert.False(t, c.managed)
		waitClosed(t, c.Done())
	})
}
