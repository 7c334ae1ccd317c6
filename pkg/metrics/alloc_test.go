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
	for range 2000 {
		roundTrip()
	}
	allocs := testing.AllocsPerRun(2000, roundTrip)
	t.Logf("allocations per NOTIFY with metrics: %v", allocs)
	require.Zero(t, allocs)
}
