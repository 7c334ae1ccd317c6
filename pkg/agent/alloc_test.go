//go:build !race

package agent_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// allocsPerNotify measures the heap allocations and bytes of one NOTIFY
// through the whole stack: frame in over TCP, reader, decoder, dispatcher,
// worker (context and deadline included), writer, ACK out.
func allocsPerNotify(t *testing.T, h agent.HandlerFunc) (allocs, bytes float64) {
	t.Helper()
	a := agent.New()
	a.Message("check-request", h)
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
	allocs, bytes = spoptest.AllocsPerRun(5000, roundTrip)
	f, err := codec.ParseFrame(ack[:n])
	require.NoError(t, err)
	require.Equal(t, codec.FrameAck, f.Type)
	return allocs, bytes
}

// TestAllocsPerNotify pins what a NOTIFY costs in allocations through the
// whole stack, by what the handler does with its context. A handler that
// reads two args and sets two variables costs no allocation of its own:
// only its context, carved from a slab of 128, so 1/128 of an allocation
// and 48 bytes. Asking for Done, or deriving a context, costs a channel, a
// timer and a registration with the connection's context.
func TestAllocsPerNotify(t *testing.T) {
	for _, tc := range []struct {
		name      string
		h         agent.HandlerFunc
		maxAllocs float64
	}{
		{"reads two args, sets two variables", checkRequest, 0.05},
		{"also checks ctx.Err", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return checkRequest(ctx, m, act)
		}, 0.05},
		{"also selects on ctx.Done", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			return checkRequest(ctx, m, act)
		}, 3},
		{"also derives context.WithTimeout", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			c2, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return checkRequest(c2, m, act)
		}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allocs, bytes := allocsPerNotify(t, tc.h)
			t.Logf("%s: %.3f allocations, %.0f bytes per NOTIFY through the whole stack", tc.name, allocs, bytes)
			require.LessOrEqual(t, allocs, tc.maxAllocs)
		})
	}
}
