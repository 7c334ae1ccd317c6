// Package hctx implements the context.Context a handler receives.
//
// A handler's context honours the whole context contract during the
// handler's life and after it: when the handler returns, the dispatcher
// calls Finish, and from then on Err reports context.Canceled (or
// context.DeadlineExceeded if the deadline came first), Done is closed,
// Value still answers from the parent and Deadline keeps returning the same
// time. A Ctx is never reused for another handler call, so a goroutine or a
// library that keeps it (the context package itself does, for contexts
// derived from it) can never observe a later NOTIFY's deadline, values or
// cancellation.
//
// What keeps it cheap:
//
//   - Contexts are carved from slabs (Alloc): one allocation serves
//     slabSize handler calls, and a Ctx is about 48 bytes.
//   - Err compares a monotonic clock with the deadline; no timer exists
//     until someone asks for Done.
//   - Done, and AfterFunc (the hook context.WithCancel and friends use on a
//     parent that is not one of the context package's own types), allocate
//     a channel, one timer and one registration with the parent on first
//     use. A handler that derives a context pays for them; one that never
//     touches its context pays nothing.
//   - Because Ctx has an AfterFunc method, context.WithTimeout(ctx, d) and
//     context.AfterFunc(ctx, f) register a callback instead of starting a
//     goroutine that watches the parent.
package hctx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the monotonic origin of every Ctx's deadline. Set once when the
// package is initialised and never written again.
var epoch = time.Now()

// Now returns the monotonic time since the package epoch, the unit of the
// deadlines Init takes: it reads the monotonic clock only.
func Now() int64 { return int64(time.Since(epoch)) }

// Since converts t to the package's monotonic time.
func Since(t time.Time) int64 { return int64(t.Sub(epoch)) }

// Time converts a monotonic time of the package back to a time.Time.
func Time(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }

// Latched states of a Ctx; 0 is live.
const (
	stCanceled uint32 = 1 + iota
	stDeadline
)

func errOf(st uint32) error {
	if st == stDeadline {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func stateOf(err error) uint32 {
	if errors.Is(err, context.DeadlineExceeded) {
		return stDeadline
	}
	return stCanceled
}

// Ctx is one handler call's context. The zero value is not usable: get one
// from an Alloc or New, then Init it.
type Ctx struct {
	parent context.Context // never nil once initialised
	due    int64           // deadline, as Now() counts; written once by Init
	// managed is set by InitManaged: the owner ends c at its deadline and
	// when parent ends, so Done needs no timer and no registration.
	managed bool
	state   atomic.Uint32 // 0 live, else the latched stCanceled/stDeadline
	ext     atomic.Pointer[ext]
}

// ext is what Done and AfterFunc need; made on their first call.
type ext struct {
	mu     sync.Mutex
	done   chan struct{} // made with ext, closed once the state is latched
	closed bool
	timer  *time.Timer // fires at the deadline; stopped when closed
	stop   func() bool // undoes the registration with the parent
	funcs  []afterFunc
	nextID uint64
	inline [2]afterFunc // funcs' first backing array: a derived context or two need no more
}

type afterFunc struct {
	id uint64
	f  func()
}

// Init prepares c for one handler call: parent gives the values and the
// cancellation, due (as Now counts) the deadline, which is brought forward
// to the parent's if that is earlier. parent must not be nil.
func (c *Ctx) Init(parent context.Context, due int64) {
	if pd, ok := parent.Deadline(); ok {
		due = min(due, Since(pd))
	}
	c.parent, c.due = parent, due
}

// InitManaged is Init for an owner that promises to call Expire once the
// deadline has passed and Cancel once parent has ended, for as long as the
// call runs (the dispatcher's deadline watch and its per-connection
// cancellation do): Done then makes a channel and nothing else, no timer and
// no registration with parent. If parent's own deadline comes first, c
// watches its deadline itself, as after Init.
func (c *Ctx) InitManaged(parent context.Context, due int64) {
	c.Init(parent, due)
	c.managed = c.due == due
}

// Expire ends c with context.DeadlineExceeded, unless it already ended: the
// owner of a managed context calls it at the deadline.
func (c *Ctx) Expire() { c.latch(stDeadline) }

// Cancel ends c as its parent ended (err is the parent's Err), unless it
// already ended: the owner of a managed context calls it.
func (c *Ctx) Cancel(err error) { c.latch(stateOf(err)) }

// New returns a fresh Ctx with parent and deadline, allocated on its own.
func New(parent context.Context, deadline time.Time) *Ctx {
	c := new(Ctx)
	c.Init(parent, Since(deadline))
	return c
}

// Due returns the deadline as Now counts.
func (c *Ctx) Due() int64 { return c.due }

// Expired reports whether the deadline has passed. It reads only the
// monotonic clock and takes no lock.
func (c *Ctx) Expired() bool { return Now() >= c.due }

// Finish ends the handler call: the context is cancelled, with
// context.DeadlineExceeded if the deadline has passed and Canceled
// otherwise, unless it already ended. Every later call on c answers as an
// ended context does. It reports whether c ended on its deadline, so that
// the caller's verdict ("late") and what c reports forever after agree. It
// is safe to call more than once.
//
// It reads the clock, managed or not: the owner's timer may fire late, and
// a call that returns after its deadline must count as late however soon.
func (c *Ctx) Finish() (late bool) {
	st := stCanceled
	if c.Expired() {
		st = stDeadline
	}
	c.latch(st)
	return c.state.Load() == stDeadline
}

// latch ends the context with st unless it already ended.
func (c *Ctx) latch(st uint32) {
	if !c.state.CompareAndSwap(0, st) {
		return
	}
	if e := c.ext.Load(); e != nil {
		e.close()
	}
}

// close closes done, stops the timer and the parent registration and runs
// the AfterFunc callbacks, once. Callbacks run after the lock is dropped:
// the context package's own callbacks call Err on c.
func (e *ext) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.done)
	if e.timer != nil {
		e.timer.Stop()
	}
	stop, funcs := e.stop, e.funcs
	e.stop, e.funcs = nil, nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	for _, af := range funcs {
		af.f()
	}
}

// Deadline implements context.Context. It returns the same time on every
// call, during the handler and after.
func (c *Ctx) Deadline() (time.Time, bool) { return Time(c.due), true }

// Value implements context.Context: values come from the parent (the
// agent's base context), during the handler and after.
//
// The one key it does not pass on is the one through which the context
// package finds the nearest of its own cancelable contexts (for
// context.Cause, and to hook children onto it): that would be the
// connection's, which does not end when the handler does, so Cause would
// report the connection's state instead of this context's. Without it,
// Cause reports Err, and children register through AfterFunc.
func (c *Ctx) Value(key any) any {
	if key == cancelCtxKey && key != nil {
		return nil
	}
	return c.parent.Value(key)
}

// cancelCtxKey is the context package's private key for "the nearest
// cancelable context of mine", found once at start-up by watching what
// context.Cause asks a context for, and checked against a real one. Never
// written again. If a future Go finds it differently, it stays nil and
// Value passes every key on (Cause then reports the connection's cause; a
// test catches that).
var cancelCtxKey = findCancelCtxKey()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Err() error { return context.Canceled }

func (p *keyProbe) Value(k any) any {
	if p.key == nil {
		p.key = k
	}
	return nil
}

func findCancelCtxKey() any {
	p := &keyProbe{Context: context.Background()}
	_ = context.Cause(p)
	if p.key == nil {
		return nil
	}
	cc, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cc.Value(p.key) != any(cc) {
		return nil
	}
	return p.key
}

// Err implements context.Context. Once it returns an error it returns the
// same one forever.
func (c *Ctx) Err() error {
	st := c.state.Load()
	if st == 0 {
		if perr := c.parent.Err(); perr != nil {
			c.latch(stateOf(perr))
		} else if c.Expired() {
			c.latch(stDeadline)
		} else {
			return nil
		}
		st = c.state.Load()
	}
	if e := c.ext.Load(); e != nil {
		// As the context package's own contexts do: a non-nil Err
		// implies a closed Done. The closer is at most a few
		// instructions behind.
		<-e.done
	}
	return errOf(st)
}

// Done implements context.Context. The channel is made, and the deadline
// timer armed, on the first call.
func (c *Ctx) Done() <-chan struct{} {
	if e := c.ext.Load(); e != nil {
		return e.done
	}
	return c.arm().done
}

// AfterFunc arranges for f to run once c is done, and returns a function
// that cancels that; it reports whether it stopped f from running. It is the
// hook through which context.WithCancel, WithTimeout, WithDeadline and
// AfterFunc register with a parent of a type they do not know, instead of
// starting a goroutine to watch it.
//
// Unlike context.AfterFunc, f runs on the goroutine that ends c (the
// handler's worker, a timer, or the parent's cancellation), and must not
// block: the context package's callbacks only cancel the derived context.
// Call context.AfterFunc(ctx, f) for a callback that runs in a goroutine of
// its own. If c is already done, f runs at once in a new goroutine.
func (c *Ctx) AfterFunc(f func()) (stop func() bool) {
	e := c.arm()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	e.nextID++
	id := e.nextID
	e.funcs = append(e.funcs, afterFunc{id: id, f: f})
	e.mu.Unlock()
	return func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for i := range e.funcs {
			if e.funcs[i].id == id {
				e.funcs = append(e.funcs[:i], e.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// arm makes the ext on first use: the done channel, a timer for the
// deadline and a registration with the parent, so that Done closes on
// whichever comes first.
func (c *Ctx) arm() *ext {
	if e := c.ext.Load(); e != nil {
		return e
	}
	e := &ext{done: make(chan struct{})}
	e.funcs = e.inline[:0]
	if !c.ext.CompareAndSwap(nil, e) {
		return c.ext.Load()
	}
	if c.state.Load() != 0 {
		// Ended before anyone asked: latch ran before e was published, or
		// is publishing it now; close is idempotent.
		e.close()
		return e
	}
	if c.managed {
		// The owner ends c at the deadline and with the parent from now
		// on (it sees e); these checks cover what ended before.
		if perr := c.parent.Err(); perr != nil {
			c.latch(stateOf(perr))
		} else if c.Expired() {
			c.latch(stDeadline)
		}
		return e
	}
	if pd := c.parent.Done(); pd != nil {
		select {
		case <-pd:
			c.latch(stateOf(c.parent.Err()))
			return e
		default:
		}
		var stop func() bool
		if p, ok := c.parent.(*Ctx); ok {
			// A context of ours (middleware.Timeout's): register with
			// it directly rather than through context.AfterFunc.
			stop = p.AfterFunc(func() { c.latch(p.state.Load()) })
		} else {
			stop = context.AfterFunc(c.parent, func() { c.latch(stateOf(c.parent.Err())) })
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			stop()
			return e
		}
		e.stop = stop
		e.mu.Unlock()
	}
	d := time.Duration(c.due - Now())
	if d <= 0 {
		c.latch(stDeadline)
		return e
	}
	t := time.AfterFunc(d, func() { c.latch(stDeadline) })
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		t.Stop()
		return e
	}
	e.timer = t
	e.mu.Unlock()
	return e
}

// String describes c, as the context package's types describe themselves.
func (c *Ctx) String() string { return "spoe-forge handler context" }

// slabSize is how many contexts one allocation holds.
const slabSize = 128

type slab struct {
	next int
	ctxs [slabSize]Ctx
}

// Alloc hands out fresh contexts carved from slabs, so that a handler call
// costs 1/slabSize of an allocation. A Ctx is never handed out twice; a
// slab is freed by the garbage collector once none of its contexts is
// referenced. The zero Alloc is ready to use and safe for concurrent use.
type Alloc struct {
	slabs sync.Pool // *slab with free contexts
}

// Slab is a handful of fresh contexts for one goroutine at a time (a
// worker, for the tasks of one turn): taking one costs no synchronisation.
// Get one from Alloc.Slab and give it back with Alloc.PutSlab.
type Slab struct{ s *slab }

// Slab returns a Slab with free contexts.
func (a *Alloc) Slab() Slab {
	s, _ := a.slabs.Get().(*slab)
	if s == nil {
		s = new(slab)
	}
	return Slab{s}
}

// PutSlab gives back what is left of sl, which must not be used after.
func (a *Alloc) PutSlab(sl Slab) {
	if sl.s != nil && sl.s.next < slabSize {
		a.slabs.Put(sl.s)
	}
}

// GetManaged returns a fresh Ctx from sl, initialised as InitManaged does,
// taking a new slab from a when sl is used up.
func (sl *Slab) GetManaged(a *Alloc, parent context.Context, due int64) *Ctx {
	if sl.s == nil || sl.s.next == slabSize {
		*sl = a.Slab()
	}
	c := &sl.s.ctxs[sl.s.next]
	sl.s.next++
	c.InitManaged(parent, due)
	return c
}

// Get returns a fresh Ctx initialised with parent and due (as Init).
func (a *Alloc) Get(parent context.Context, due int64) *Ctx {
	c := a.get()
	c.Init(parent, due)
	return c
}

// GetManaged returns a fresh Ctx initialised as InitManaged does.
func (a *Alloc) GetManaged(parent context.Context, due int64) *Ctx {
	c := a.get()
	c.InitManaged(parent, due)
	return c
}

func (a *Alloc) get() *Ctx {
	s, _ := a.slabs.Get().(*slab)
	if s == nil {
		s = new(slab)
	}
	c := &s.ctxs[s.next]
	s.next++
	if s.next < slabSize {
		a.slabs.Put(s)
	}
	return c
}
