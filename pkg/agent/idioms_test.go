package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

type baseKey struct{}

// staleChecks verifies what goroutines that outlive their handler see of
// its context. Every violation is recorded.
type staleChecks struct {
	wg       sync.WaitGroup
	n        atomic.Int64
	mu       sync.Mutex
	problems []string
}

func (s *staleChecks) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) < 20 {
		s.problems = append(s.problems, fmt.Sprintf(format, args...))
	}
}

// later checks ctx 10 ms after the handler returned, and once its
// NOTIFY's ACK has reached the client (the agent ends a handler's context
// before it sends the ACK; on a loaded machine the worker may be
// descheduled for longer than 10 ms between the two): ended with the
// expected error, Done closed, Value and Deadline still answering as they
// did during the handler.
func (s *staleChecks) later(ctx context.Context, name string, returned <-chan struct{}, ack *ackNote) {
	dl, _ := ctx.Deadline()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-returned
		time.Sleep(10 * time.Millisecond)
		select {
		case <-ack.done:
		case <-time.After(10 * time.Second):
			s.fail("%s: no ACK 10 s after the handler returned", name)
		}
		// Unless the NOTIFY was answered as late (error code 3), or its
		// ACK came after the deadline (a panic's code 2 says nothing of
		// time), the context ended before its deadline: it must say
		// Canceled.
		early := ack.code != agent.ErrCodeTimeout && !ack.late
		s.n.Add(1)
		err := ctx.Err()
		switch {
		case err == nil:
			s.fail("%s: Err is nil after the handler returned", name)
		case early && !errors.Is(err, context.Canceled):
			s.fail("%s: returned early, but Err is %v", name, err)
		case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			s.fail("%s: Err is %v", name, err)
		}
		select {
		case <-ctx.Done():
		default:
			s.fail("%s: Done is open after the handler returned", name)
		}
		if v := ctx.Value(baseKey{}); v != "base" {
			s.fail("%s: Value(baseKey) = %v after return", name, v)
		}
		if d2, ok := ctx.Deadline(); !ok || !d2.Equal(dl) {
			s.fail("%s: Deadline moved from %v to %v", name, dl, d2)
		}
		// Deriving from a stale context works, and is ended at once.
		c2, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		select {
		case <-c2.Done():
		case <-time.After(time.Second):
			s.fail("%s: a context derived after return is not done", name)
		}
	}()
}

type ackKey struct{ conn, sid int64 }

// ackNote is the ACK of one NOTIFY as the client saw it: done is closed
// once it arrived, after code (its error code) is set.
type ackNote struct {
	done chan struct{}
	code int64
	late bool // it came after the handler's deadline
}

// ackSignal returns the note of NOTIFY sid on connection conn.
func ackSignal(m *sync.Map, conn, sid int64) *ackNote {
	n, _ := m.LoadOrStore(ackKey{conn, sid}, &ackNote{done: make(chan struct{})})
	return n.(*ackNote)
}

// idiom is a handler written the way Go code uses contexts.
type idiom struct {
	name string
	// code is the error code the ACK must carry (0: none, and ok=1).
	code int
	fn   func(s *staleChecks, ctx context.Context) error
}

func idioms(timeout time.Duration) []idiom {
	return []idiom{
		{"with-timeout", 0, func(_ *staleChecks, ctx context.Context) error {
			c2, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			select {
			case <-c2.Done():
				return c2.Err()
			case <-time.After(100 * time.Microsecond):
			}
			return nil
		}},
		{"with-cancel-forgotten", 0, func(_ *staleChecks, ctx context.Context) error {
			// A derived context whose cancel is never called: the
			// handler's end must release it.
			var forgotten struct{ cancel context.CancelFunc }
			var c2 context.Context
			c2, forgotten.cancel = context.WithCancel(ctx)
			_ = c2.Err()
			return nil
		}},
		{"after-func", 0, func(s *staleChecks, ctx context.Context) error {
			s.wg.Add(1)
			context.AfterFunc(ctx, func() {
				defer s.wg.Done()
				if ctx.Err() == nil {
					s.fail("after-func: ran with a nil Err")
				}
			})
			return nil
		}},
		{"errgroup", 0, func(_ *staleChecks, ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			for range 3 {
				g.Go(func() error {
					select {
					case <-gctx.Done():
						return gctx.Err()
					case <-time.After(50 * time.Microsecond):
						return nil
					}
				})
			}
			return g.Wait()
		}},
		{"without-cancel", 0, func(s *staleChecks, ctx context.Context) error {
			bg := context.WithoutCancel(ctx)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				time.Sleep(5 * time.Millisecond)
				if bg.Value(baseKey{}) != "base" || bg.Err() != nil {
					s.fail("without-cancel: %v %v", bg.Value(baseKey{}), bg.Err())
				}
			}()
			return nil
		}},
		{"select-done", 0, func(_ *staleChecks, ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			default:
				return nil
			}
		}},
		{"blocks-past-deadline", agent.ErrCodeTimeout, func(_ *staleChecks, ctx context.Context) error {
			time.Sleep(timeout + 30*time.Millisecond) // ignores ctx
			return nil
		}},
		{"waits-for-deadline", agent.ErrCodeTimeout, func(_ *staleChecks, ctx context.Context) error {
			c2, cancel := context.WithCancel(ctx)
			defer cancel()
			<-c2.Done()
			return c2.Err()
		}},
		{"panics-after-deriving", agent.ErrCodePanic, func(_ *staleChecks, ctx context.Context) error {
			c2, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_ = c2.Done()
			panic("boom")
		}},
	}
}

// TestHandlerContextIdioms drives the whole stack at 16 connections x 64
// pipelined NOTIFYs with handlers that use their context as Go code does,
// each bare and inside middleware.Timeout, and checks that every NOTIFY is
// answered once with the right code, that no stale context misbehaves, and
// (TestMain's goleak) that nothing leaks. Before contexts were made per call
// this crashed the process within a few NOTIFYs.
func TestHandlerContextIdioms(t *testing.T) {
	const timeout = 400 * time.Millisecond
	dur := 3 * time.Second
	if testing.Short() {
		dur = 500 * time.Millisecond
	}
	if v := os.Getenv("SPOE_IDIOMS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		dur = d
	}
	var stale staleChecks
	var acks sync.Map // ackKey -> chan struct{}, closed when the ACK arrives
	base := context.WithValue(context.Background(), baseKey{}, "base")
	a := agent.New(agent.WithTimeout(timeout), agent.WithBaseContext(base),
		agent.WithErrorVar(agent.ScopeTransaction, "err"))
	type route struct {
		name     string
		code     int
		deadline time.Duration // the earliest deadline its handler runs under
	}
	var routes []route
	for _, id := range idioms(timeout) {
		h := func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			returned := make(chan struct{})
			conn, _ := m.Int("conn")
			sid, _ := m.Int("sid")
			stale.later(ctx, id.name, returned, ackSignal(&acks, conn, sid))
			defer close(returned)
			act.SetInt(agent.ScopeTransaction, "ok", 1)
			return id.fn(&stale, ctx)
		}
		a.Message(id.name, h)
		routes = append(routes, route{id.name, id.code, timeout})
		// The same inside middleware.Timeout, whose deadline comes first.
		a.Message(id.name+"+timeout", h, middleware.Timeout(timeout/2))
		routes = append(routes, route{id.name + "+timeout", id.code, timeout / 2})
	}
	addr := start(t, a)

	var wrong, overloaded atomic.Int64
	var wrongMu sync.Mutex
	var wrongs []string
	stop := make(chan struct{})
	time.AfterFunc(dur, func() { close(stop) })
	var g errgroup.Group
	stats := make([]spoptest.LoadStats, 16)
	for i := range stats {
		g.Go(func() error {
			var err error
			stats[i], err = spoptest.Pipeline(addr, 64, stop, func(sid uint64) []byte {
				r := routes[sid%uint64(len(routes))]
				return spoptest.NotifyFrame(sid, 1, spoptest.Msg{Name: r.name, Args: []codec.Arg{
					spoptest.A("conn", codec.Int64(int64(i))), spoptest.A("sid", codec.Int64(int64(sid)))}})
			}, func(sid uint64, f codec.Frame, latency time.Duration) {
				note := ackSignal(&acks, int64(i), int64(sid))
				defer close(note.done)
				r := routes[sid%uint64(len(routes))]
				var acts codec.Ack
				if err := acts.Decode(f.Payload); err != nil {
					wrong.Add(1)
					return
				}
				code, ok := int64(0), false
				for _, act := range acts.Actions {
					if string(act.Name) == "err" {
						code, ok = act.Value.Int()
					}
				}
				note.code, note.late = code, latency >= r.deadline
				if code == agent.ErrCodeTimeout && r.code != agent.ErrCodeTimeout && note.late {
					// Under overload (-race on two shared cores) a
					// NOTIFY can wait past its deadline in the queue:
					// then a timeout is the right answer, whatever its
					// handler would have done.
					overloaded.Add(1)
					return
				}
				if int(code) != r.code || ok != (r.code != 0) {
					wrong.Add(1)
					wrongMu.Lock()
					if len(wrongs) < 10 {
						wrongs = append(wrongs, fmt.Sprintf("%s: error code %d, want %d", r.name, code, r.code))
					}
					wrongMu.Unlock()
				}
			})
			return err
		})
	}
	require.NoError(t, g.Wait())
	stale.wg.Wait()
	total, acked, unmatched := 0, 0, 0
	for _, s := range stats {
		total += s.Sent
		acked += s.Acked
		unmatched += s.Unmatched
	}
	t.Logf("%d NOTIFYs in %v over 16 connections x 64 in flight, %d stale-context checks, %d NOTIFYs answered as late because the overloaded agent ran them past their deadline",
		total, dur, stale.n.Load(), overloaded.Load())
	assert.Equal(t, total, acked, "every NOTIFY answered")
	assert.Zero(t, unmatched, "no second ACK")
	assert.Zero(t, wrong.Load(), "ACKs with the wrong error code: %v", wrongs)
	assert.Empty(t, stale.problems)
	assert.Greater(t, stale.n.Load(), int64(len(routes)), "the stale checks ran")
}
