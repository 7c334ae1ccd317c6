//go:build !race

package middleware_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestZeroAllocsWithMiddleware: recovery, timeout, error-variable and
// access-log middleware (its level disabled, as in production at info with
// debug access logs) keep the whole stack at 0 allocations per NOTIFY.
func TestZeroAllocsWithMiddleware(t *testing.T) {
	log, err := zap.NewProduction(zap.IncreaseLevel(zap.WarnLevel))
	require.NoError(t, err)
	a := agent.New()
	a.Use(middleware.Recover(), middleware.AccessLog(log), middleware.ErrorVar(agent.ScopeTransaction, "err"))
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		ip, _ := m.IP("ip")
		path, _ := m.Bytes("path")
		act.SetBool(agent.ScopeTransaction, "allowed", ip.IsLoopback())
		act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
		return nil
	}, middleware.Timeout(500*time.Millisecond))
	c := serve(t, a)
	frame := spoptest.NotifyFrame(7, 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{
		spoptest.A("ip", codec.Addr(netip.MustParseAddr("127.0.0.1"))),
		spoptest.A("path", codec.String("/some/path/of/thirty/bytes/xx")),
	}})
	ack := make([]byte, 256)
	roundTrip := func() { c.RoundTrip(frame, ack) }
	allocs, bytes := spoptest.AllocsPerRun(5000, roundTrip)
	t.Logf("per NOTIFY with middleware: %.3f allocations, %.0f bytes", allocs, bytes)
	// The handler's context and Timeout's own, each 1/128 of a slab.
	require.LessOrEqual(t, allocs, 0.05)
}

// nopTracer passes the context on, as a tracer with sampling off does.
type nopTracer struct{}

func (nopTracer) Start(ctx context.Context, m *agent.Message) context.Context { return ctx }
func (nopTracer) End(context.Context, *agent.Message, time.Duration, error)   {}

// TestAllocsWithTraceAndTimeout: Trace outside Timeout (the order that
// crashed the process when Timeout moved the pooled context's deadline)
// costs nothing per NOTIFY beyond the two contexts' share of their slabs.
func TestAllocsWithTraceAndTimeout(t *testing.T) {
	a := agent.New()
	a.Use(middleware.Trace(nopTracer{}), middleware.Recover())
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	}, middleware.Timeout(100*time.Millisecond))
	c := serve(t, a)
	frame := spoptest.NotifyFrame(7, 1, spoptest.Msg{Name: "check-request"})
	ack := make([]byte, 256)
	allocs, bytes := spoptest.AllocsPerRun(5000, func() { c.RoundTrip(frame, ack) })
	t.Logf("per NOTIFY with Trace and Timeout: %.3f allocations, %.0f bytes", allocs, bytes)
	require.LessOrEqual(t, allocs, 0.05)
}
