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
	for range 2000 {
		roundTrip()
	}
	allocs := testing.AllocsPerRun(2000, roundTrip)
	t.Logf("allocations per NOTIFY with middleware: %v", allocs)
	require.Zero(t, allocs)
}
