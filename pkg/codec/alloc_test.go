//go:build !race

package codec_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// The codec's allocation budget on the hot path is zero: a warm Notify
// decodes a NOTIFY and finds its arguments without allocating, and an ACK is
// encoded into a reused buffer without allocating. (The race detector
// allocates, hence the build tag.)

func TestAllocsNotifyDecode(t *testing.T) {
	var n codec.Notify
	require.True(t, decodeNotify(&n, benchNotifyFrame), "warm-up")
	allocs := testing.AllocsPerRun(1000, func() {
		if !decodeNotify(&n, benchNotifyFrame) {
			t.Fatal("decode failed")
		}
	})
	require.Zero(t, allocs, "allocations per NOTIFY decode")
}

func TestAllocsAckEncode(t *testing.T) {
	buf, err := encodeAck(nil, 43, 1) // warm-up: grows buf once
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(1000, func() {
		if buf, err = encodeAck(buf[:0], 43, 1); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs, "allocations per ACK encode")
}

func TestAllocsOtherHotPaths(t *testing.T) {
	frames := map[string][]byte{
		"notify-all-types": loadVector(t, "2.6/notify-all-types-get.hex"),
		"notify-body":      loadVector(t, "3.2/notify-body-12000.hex"),
		"ack-all-types":    loadVector(t, "2.6/ack-all-types.hex"),
		"haproxy-hello":    loadVector(t, "3.2/haproxy-hello.hex"),
	}
	var (
		n   codec.Notify
		a   codec.Ack
		h   codec.HAProxyHello
		out []byte
	)
	for name, wire := range frames {
		t.Run(name, func(t *testing.T) {
			decode := func() {
				f, err := codec.DecodeFrame(wire, codec.MaxFrameLen)
				if err != nil {
					t.Fatal(err)
				}
				switch f.Type {
				case codec.FrameNotify:
					err = n.Decode(f.Payload)
				case codec.FrameAck:
					err = a.Decode(f.Payload)
				case codec.FrameHAProxyHello:
					if err = h.Decode(f.Payload); err == nil {
						err = h.Validate()
						out = codec.AppendAgentHello(out[:0], h.MaxFrameSize, h.Capabilities&codec.CapPipelining)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			decode()
			require.Zero(t, testing.AllocsPerRun(200, decode))
		})
	}
	t.Run("empty ACK", func(t *testing.T) {
		out = codec.AppendAck(out[:0], 1, 1, nil)
		require.Zero(t, testing.AllocsPerRun(200, func() { out = codec.AppendAck(out[:0], 1, 1, nil) }))
	})
	t.Run("AGENT-DISCONNECT", func(t *testing.T) {
		out = codec.AppendDisconnect(out[:0], codec.FrameAgentDisconnect, codec.StatusNormal, "normal")
		require.Zero(t, testing.AllocsPerRun(200, func() {
			out = codec.AppendDisconnect(out[:0], codec.FrameAgentDisconnect, codec.StatusNormal, codec.StatusNormal.String())
		}))
	})
	t.Run("errors", func(t *testing.T) {
		// Returning a sentinel costs nothing.
		require.Zero(t, testing.AllocsPerRun(200, func() {
			if _, _, err := codec.ParseVarint([]byte{0xf0}); err == nil {
				t.Fatal("no error")
			}
		}))
	})
}

// TestAllocsHeaders: looking headers up in a req.hdrs_bin block captured
// from HAProxy, iterating over it and validating it allocate nothing.
func TestAllocsHeaders(t *testing.T) {
	h := codec.Headers(loadHdrsBlock(t, "3.2/repeated-req.hex"))
	allocs := testing.AllocsPerRun(1000, func() {
		v, ok := h.Get("X-Forwarded-For")
		_, absent := h.Get("authorization")
		it := h.Iter()
		n := 0
		for it.Next() {
			if it.NameIs("cookie") {
				n++
			}
		}
		if !ok || len(v) == 0 || absent || n != 2 || h.Count("accept-language") != 2 || h.Validate() != nil {
			t.Fatal("lookup failed")
		}
	})
	require.Zero(t, allocs, "allocations per header lookup")
}
