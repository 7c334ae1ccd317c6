package middleware_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

func serve(t testing.TB, a *agent.Agent) *spoptest.Client {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = a.Serve(l) }()
	t.Cleanup(func() { _ = a.Close() })
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	return c
}

// trace returns a middleware that records its name before and after.
func trace(mu *sync.Mutex, log *[]string, name string) agent.Middleware {
	return func(next agent.Handler) agent.Handler {
		return agent.HandlerFunc(func(ctx context.Context, m *agent.Message, a *agent.Actions) error {
			mu.Lock()
			*log = append(*log, name+">")
			mu.Unlock()
			err := next.HandleMessage(ctx, m, a)
			mu.Lock()
			*log = append(*log, "<"+name)
			mu.Unlock()
			return err
		})
	}
}

func TestOrderAndComposition(t *testing.T) {
	var mu sync.Mutex
	var log []string
	a := agent.New()
	a.Use(trace(&mu, &log, "g1"), trace(&mu, &log, "g2"))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		mu.Lock()
		log = append(log, "handler")
		mu.Unlock()
		return nil
	}, trace(&mu, &log, "p1"), trace(&mu, &log, "p2"))
	a.Message("plain", func(context.Context, *agent.Message, *agent.Actions) error {
		mu.Lock()
		log = append(log, "plain")
		mu.Unlock()
		return nil
	})
	c := serve(t, a)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	c.ReadAck()
	assert.Equal(t, []string{"g1>", "g2>", "p1>", "p2>", "handler", "<p2", "<p1", "<g2", "<g1"}, log)
	log = nil
	c.Notify(2, 1, spoptest.Msg{Name: "plain"})
	c.ReadAck()
	assert.Equal(t, []string{"g1>", "g2>", "plain", "<g2", "<g1"}, log, "Use wraps every message")
}

func codeOf(t *testing.T, ack spoptest.Ack, name string) int64 {
	t.Helper()
	v, ok := ack.Var(name)
	if !ok {
		return 0
	}
	n, _ := v.Value.Int()
	return n
}

func TestRecoverTimeoutErrorVar(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	a := agent.New(agent.WithLogger(zap.New(core)), agent.WithTimeout(time.Second))
	a.Use(middleware.ErrorVar(agent.ScopeTransaction, "err"), middleware.Recover())
	a.Message("panics", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "partial", true)
		panic("boom")
	})
	a.Message("slow", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		d, _ := ctx.Deadline()
		if time.Until(d) > 200*time.Millisecond {
			return errors.New("Timeout did not shorten the deadline")
		}
		<-ctx.Done()
		return ctx.Err()
	}, middleware.Timeout(50*time.Millisecond))
	a.Message("fails", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "partial", true)
		return errors.New("nope")
	})
	a.Message("ok", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		d, _ := ctx.Deadline()
		if time.Until(d) < 500*time.Millisecond {
			return errors.New("the Timeout of another message leaked into this one")
		}
		return nil
	})
	c := serve(t, a)
	for i, tc := range []struct {
		msg     string
		code    int64
		partial bool
	}{
		{"panics", agent.ErrCodePanic, false},
		{"slow", agent.ErrCodeTimeout, false},
		{"fails", agent.ErrCodeHandler, true},
		{"ok", 0, false},
	} {
		start := time.Now()
		c.Notify(uint64(i), 1, spoptest.Msg{Name: tc.msg})
		ack := c.ReadAck()
		assert.Equal(t, tc.code, codeOf(t, ack, "err"), tc.msg)
		_, partial := ack.Var("partial")
		assert.Equal(t, tc.partial, partial, tc.msg)
		if tc.msg == "slow" {
			assert.Less(t, time.Since(start), 500*time.Millisecond)
		}
	}
	assert.Equal(t, 1, logs.FilterMessage("handler panicked").Len())
}

func TestAccessLog(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	a := agent.New()
	a.Use(middleware.AccessLog(zap.New(core), middleware.Every(10)))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		if id, _ := m.Int("i"); id%25 == 0 {
			return errors.New("every 25th fails")
		}
		act.SetBool(agent.ScopeTransaction, "x", true)
		return nil
	})
	c := serve(t, a)
	for i := range 100 {
		c.Notify(uint64(i), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("i", codec.Int64(int64(i)))}})
		c.ReadAck()
	}
	all := logs.FilterMessage("spoe message").All()
	warn := 0
	for _, e := range all {
		assert.Equal(t, "m", e.ContextMap()["message"])
		if e.Level == zapcore.WarnLevel {
			warn++
			assert.True(t, strings.Contains(e.ContextMap()["error"].(string), "fails"))
		}
	}
	assert.Equal(t, 4, warn, "every failure is logged")
	assert.Equal(t, 4+96/10, len(all), "one success in ten is logged")
}

// TestAccessLogLevel: Level moves successes to another level (here Debug,
// below the logger's Info: not written, and nothing built for them);
// failures stay at Warn.
func TestAccessLogLevel(t *testing.T) {
	for _, tc := range []struct {
		level     zapcore.Level
		successes int
	}{
		{zapcore.DebugLevel, 0},
		{zapcore.ErrorLevel, 9},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			a := agent.New()
			a.Use(middleware.AccessLog(zap.New(core), middleware.Level(tc.level)))
			a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				if id, _ := m.Int("i"); id == 0 {
					return errors.New("the first fails")
				}
				return nil
			})
			c := serve(t, a)
			for i := range 10 {
				c.Notify(uint64(i), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("i", codec.Int64(int64(i)))}})
				c.ReadAck()
			}
			byLevel := map[zapcore.Level]int{}
			for _, e := range logs.FilterMessage("spoe message").All() {
				byLevel[e.Level]++
			}
			assert.Equal(t, 1, byLevel[zapcore.WarnLevel], "the failure")
			assert.Equal(t, tc.successes, byLevel[tc.level], "the successes")
		})
	}
}

type recTracer struct {
	mu     sync.Mutex
	events []string
}

type spanKey struct{}

func (r *recTracer) Start(ctx context.Context, m *agent.Message) context.Context {
	r.mu.Lock()
	r.events = append(r.events, "start "+m.Name())
	r.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, m.Name())
}

func (r *recTracer) End(ctx context.Context, m *agent.Message, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	outcome := "ok"
	var pe *agent.PanicError
	if errors.As(err, &pe) {
		outcome = "panic"
	} else if err != nil {
		outcome = "error"
	}
	if ctx.Value(spanKey{}) != m.Name() || took <= 0 {
		outcome = "bad context or duration"
	}
	r.events = append(r.events, "end "+m.Name()+" "+outcome)
}

func TestTrace(t *testing.T) {
	tr := &recTracer{}
	a := agent.New()
	a.Use(middleware.Trace(tr), middleware.Recover())
	a.Message("ok", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		if ctx.Value(spanKey{}) != "ok" {
			return errors.New("the handler did not get the tracer's context")
		}
		return nil
	})
	a.Message("boom", func(context.Context, *agent.Message, *agent.Actions) error { panic("x") })
	c := serve(t, a)
	c.Notify(1, 1, spoptest.Msg{Name: "ok"}, spoptest.Msg{Name: "boom"})
	c.ReadAck()
	assert.Equal(t, []string{"start ok", "end ok ok", "start boom", "end boom panic"}, tr.events)
}
