//go:build !race

package agent_test

import (
	"net/netip"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// TestZeroAllocsPerNotify pins the promise that a handler reading two args
// and setting two variables costs no allocation per NOTIFY, through the
// whole stack: frame in over TCP, reader, decoder, dispatcher, worker
// (context and deadline included), writer, ACK out.
func TestZeroAllocsPerNotify(t *testing.T) {
	a := agent.New()
	a.Message("check-request", checkRequest)
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	frame := spoptest.NotifyFrame(7, 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{
		spoptest.A("ip", codec.Addr(netip.MustParseAddr("127.0.0.1"))),
		spoptest.A("path", codec.String("/some/path/of/thirty/bytes/xx")),
		spoptest.A("ua", codec.String("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")),
	}})
	ack := make([]byte, 256)
	n := 0
	roundTrip := func() { n = c.RoundTrip(frame, ack) }
	for range 2000 { // warm the pools
		roundTrip()
	}
	f, err := codec.ParseFrame(ack[:n])
	require.NoError(t, err)
	require.Equal(t, codec.FrameAck, f.Type)
	allocs := testing.AllocsPerRun(2000, roundTrip)
	t.Logf("allocations per NOTIFY through the whole stack: %v", allocs)
	require.Zero(t, allocs)
}
