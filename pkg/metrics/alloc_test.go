//go:build !race

package metrics_test

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// TestZeroAllocsWithMetrics: with the Prometheus observer on, a NOTIFY still
// costs no allocation through the whole stack.
func TestZeroAllocsWithMetrics(t *testing.T) {
	_, addr, _ := instrumented(t)
	c := spoptest.Dial(t, addr)
	c.Hello("pipelining", 16380)
	frame := spoptest.NotifyFrame(7, 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{spoptest.A("i", codec.Int64(1))}})
	ack := make([]byte, 256)
	roundTrip := func() { c.RoundTrip(frame, ack) }
	allocs, bytes := spoptest.AllocsPerRun(5000, roundTrip)
	t.Logf("per NOTIFY with metrics: %.3f allocations, %.0f bytes", allocs, bytes)
	require.LessOrEqual(t, allocs, 0.05, "only the handler context's share of its slab")
}
