package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// taskCtx is the context.Context a handler receives. It is pooled with its
// task, so that a NOTIFY costs no context allocation: the deadline is a plain
// field, and Err compares the clock with it. Only a handler that asks for
// Done pays for a channel and two timers, created on first use.
//
// A taskCtx must not be used after its handler returns (it is reset and
// reused); the Handler documentation says so.
type taskCtx struct {
	parent context.Context // the connection's (or, with async, the agent's) context
	// due is the deadline as a duration since epoch, the one record of it:
	// expired reads one monotonic clock and takes no lock (time.Now would
	// read two clocks). Written by start and setDeadline, read anywhere.
	due atomic.Int64

	mu       sync.Mutex
	gen      uint64        // bumped by reset, so stale timer callbacks do nothing
	done     chan struct{} // made by the first Done call
	err      error
	timer    *time.Timer
	stopPrnt func() bool
}

// epoch is the monotonic origin of every taskCtx's due. Set once when the
// package is initialised and never written again.
var epoch = time.Now()

func (c *taskCtx) start(parent context.Context, deadline time.Time) {
	c.parent = parent
	c.due.Store(int64(deadline.Sub(epoch)))
}

// expired reports whether the deadline has passed. time.Since of a time
// with a monotonic reading reads only the monotonic clock.
func (c *taskCtx) expired() bool {
	return time.Since(epoch) >= time.Duration(c.due.Load())
}

// Deadline implements context.Context.
func (c *taskCtx) Deadline() (time.Time, bool) { return c.getDeadline(), true }

// getDeadline returns the current deadline (with a monotonic reading).
func (c *taskCtx) getDeadline() time.Time { return epoch.Add(time.Duration(c.due.Load())) }

// setDeadline moves the deadline, re-arming the Done timer if there is one
// and it has not fired.
func (c *taskCtx) setDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.due.Store(int64(t.Sub(epoch)))
	if c.timer != nil && c.err == nil {
		c.timer.Reset(time.Until(t))
	}
}

// ShortenDeadline brings the deadline of a handler's context forward to
// now+d, if that is earlier, and returns the deadline to give back to
// RestoreDeadline once the inner handler has returned. It changes the context
// in place, allocating nothing; it works only on the contexts the dispatcher
// gives handlers (ok is false for any other).
func ShortenDeadline(ctx context.Context, d time.Duration) (old time.Time, ok bool) {
	c, ok := ctx.(*taskCtx)
	if !ok {
		return time.Time{}, false
	}
	old = c.getDeadline()
	if t := time.Now().Add(d); t.Before(old) {
		c.setDeadline(t)
	}
	return old, true
}

// RestoreDeadline gives a handler's context back the deadline that
// ShortenDeadline returned.
func RestoreDeadline(ctx context.Context, old time.Time) {
	if c, ok := ctx.(*taskCtx); ok {
		c.setDeadline(old)
	}
}

// Value implements context.Context.
func (c *taskCtx) Value(key any) any { return c.parent.Value(key) }

// Err implements context.Context.
func (c *taskCtx) Err() error {
	c.mu.Lock()
	made, err := c.done != nil, c.err
	c.mu.Unlock()
	if made {
		// Done was asked for: Err follows its closing exactly.
		return err
	}
	if c.parent.Err() != nil {
		return context.Canceled
	}
	if c.expired() {
		return context.DeadlineExceeded
	}
	return nil
}

// Done implements context.Context.
func (c *taskCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.parent.Err() != nil {
		c.finishLocked(context.Canceled)
		return c.done
	}
	d := time.Until(c.getDeadline())
	if d <= 0 {
		c.finishLocked(context.DeadlineExceeded)
		return c.done
	}
	gen := c.gen
	c.timer = time.AfterFunc(d, func() { c.fire(gen, context.DeadlineExceeded) })
	c.stopPrnt = context.AfterFunc(c.parent, func() { c.fire(gen, context.Canceled) })
	return c.done
}

func (c *taskCtx) fire(gen uint64, err error) {
	c.mu.Lock()
	if c.gen == gen && c.err == nil {
		c.finishLocked(err)
	}
	c.mu.Unlock()
}

func (c *taskCtx) finishLocked(err error) {
	c.err = err
	close(c.done)
}

// reset makes the context reusable for the next task.
func (c *taskCtx) reset() {
	c.mu.Lock()
	c.gen++
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.stopPrnt != nil {
		c.stopPrnt()
		c.stopPrnt = nil
	}
	c.done, c.err = nil, nil
	c.mu.Unlock()
	c.parent = nil
}
