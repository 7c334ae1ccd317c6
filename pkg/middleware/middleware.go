// Package middleware holds the handler middleware most agents want:
// Recover, Timeout, AccessLog and ErrorVar. Register them with Agent.Use
// (for every message) or at Agent.Message (for one). Each is composed once,
// when the agent starts, and allocates nothing per message.
package middleware

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/hctx"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Recover turns a panic of the handlers it wraps into an *agent.PanicError,
// which the agent reports like a panic (agent.ErrCodePanic, actions dropped). The
// agent recovers panics by itself; use Recover to recover inside other
// middleware, so that they see the panic as an error (AccessLog, ErrorVar).
func Recover() agent.Middleware {
	return func(next agent.Handler) agent.Handler {
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = &agent.PanicError{Value: p, Stack: debug.Stack()}
				}
			}()
			return next.HandleMessage(ctx, m, a)
		})
	}
}

// Timeout gives the handlers it wraps a deadline d from the start of the
// message, if that is earlier than the NOTIFY's own (agent.WithTimeout).
// The inner handler gets a context of its own whose deadline is fixed for
// its life (the outer context is never changed: a handler or library that
// read its deadline keeps a true answer), and which is cancelled when the
// inner handler returns. A handler that returns after d gets
// context.DeadlineExceeded, which the agent reports as agent.ErrCodeTimeout.
//
// The inner context costs a fraction of an allocation (contexts are carved
// from slabs), plus a channel and a timer if the handler asks for Done.
func Timeout(d time.Duration) agent.Middleware {
	return func(next agent.Handler) agent.Handler {
		var ctxs hctx.Alloc
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) error {
			due := hctx.Now() + int64(d)
			if pd, ok := ctx.Deadline(); ok && hctx.Since(pd) <= due {
				// The outer deadline comes first: ctx already is the
				// context the handler needs, and the agent reports its
				// expiry.
				return next.HandleMessage(ctx, m, a)
			}
			c := ctxs.Get(ctx, due)
			defer c.Finish() // after a panic
			err := next.HandleMessage(c, m, a)
			if late := c.Finish(); err == nil && late {
				err = context.DeadlineExceeded
			}
			return err
		})
	}
}

// AccessLogOption configures AccessLog.
type AccessLogOption func(*accessLog)

type accessLog struct {
	level zapcore.Level
	every uint64
}

// Level sets the level of successful messages (default Info); failures are
// logged at Warn.
func Level(l zapcore.Level) AccessLogOption { return func(o *accessLog) { o.level = l } }

// Every logs one successful message in n (default 1: all). Failures are
// always logged.
func Every(n int) AccessLogOption {
	return func(o *accessLog) {
		if n > 0 {
			o.every = uint64(n)
		}
	}
}

// AccessLog logs each message: its name, how long the handler took, its
// stream and frame ids, and its error. The level is checked before any field
// is built, successes can be sampled, and nothing is formatted on the hot
// path.
func AccessLog(log *zap.Logger, opts ...AccessLogOption) agent.Middleware {
	o := accessLog{level: zapcore.InfoLevel, every: 1}
	for _, f := range opts {
		f(&o)
	}
	var n atomic.Uint64
	return func(next agent.Handler) agent.Handler {
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) error {
			start := time.Now()
			err := next.HandleMessage(ctx, m, a)
			lvl := o.level
			if err != nil {
				lvl = zapcore.WarnLevel
			} else if o.every > 1 && n.Add(1)%o.every != 0 {
				return nil
			}
			if ce := log.Check(lvl, "spoe message"); ce != nil {
				ce.Write(zap.String("message", m.Name()), zap.Duration("took", time.Since(start)),
					zap.Uint64("stream_id", m.StreamID()), zap.Uint64("frame_id", m.FrameID()),
					zap.Int("actions", a.Len()), zap.Error(err))
			}
			return err
		})
	}
}

// ErrorVar sets the variable scope.name to the agent's error code (1001
// error, 1002 panic, 1003 missed deadline, 1004 actions too large, 1005
// invalid action: agent.ErrCodeHandler and the others) when the handlers it
// wraps fail, as agent.WithErrorVar does for every message. The variable is
// set even when the handler's own actions are dropped. Give it a name of its
// own ("agent_error", say), not the one HAProxy's "option set-on-error"
// writes: HAProxy's values (1 to 5, 255, 256 and up) mean other things.
func ErrorVar(scope agent.Scope, name string) agent.Middleware {
	return func(next agent.Handler) agent.Handler {
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) error {
			a.SetErrorVar(scope, name)
			return next.HandleMessage(ctx, m, a)
		})
	}
}

// Tracer receives a callback when a message starts and when it ends: the
// hook for OpenTelemetry or any other tracing system (see
// examples/otel). Start may return a derived context (carrying a span); it is
// what the handler receives. Both are called on the NOTIFY's hot path.
type Tracer interface {
	Start(ctx context.Context, m *agent.Message) context.Context
	End(ctx context.Context, m *agent.Message, took time.Duration, err error)
}

// Trace calls t around the handlers it wraps. Put it before (outside)
// Recover, Use(Trace(t), Recover()), so that a panic reaches End as an
// error.
func Trace(t Tracer) agent.Middleware {
	return func(next agent.Handler) agent.Handler {
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) error {
			start := time.Now()
			tctx := t.Start(ctx, m)
			err := next.HandleMessage(tctx, m, a)
			t.End(tctx, m, time.Since(start), err)
			return err
		})
	}
}
