//go:build !race

package metrics_test

import (
	"io"
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
	var hdr [4]byte
	roundTrip := func() {
		if _, err := c.NC.Write(frame); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(c.NC, hdr[:]); err != nil {
			panic(err)
		}
		n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
		if _, err := io.ReadFull(c.NC, ack[:n]); err != nil {
			panic(err)
		}
	}
	for range 2000 {
		roundTrip()
	}
	allocs := testing.AllocsPerRun(2000, roundTrip)
	t.Logf("allocations per NOTIFY with metrics: %v", allocs)
	require.Zero(t, allocs)
}
