package main

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

func TestProfilesDecode(t *testing.T) {
	for _, p := range profiles {
		t.Run(p, func(t *testing.T) {
			payload, err := messagePayload(p, 20000)
			require.NoError(t, err)
			var n codec.Notify
			require.NoError(t, n.Decode(payload))
			m, ok := n.Message("check-request")
			require.True(t, ok)
			ip, ok := m.Arg("ip")
			require.True(t, ok)
			a, ok := ip.Addr()
			require.True(t, ok)
			require.True(t, a.Is4())
			path, ok := m.Arg("path")
			require.True(t, ok)
			s, _ := path.String()
			require.Len(t, s, 30)
		})
	}
	_, err := messagePayload("nope", 0)
	require.Error(t, err)
}

// TestFragmentation checks the large profile's frames: cut at
// max-frame-size-32 like HAProxy 2.6 (§8.4: mfs 300 → 275-byte frames with
// one-byte ids), a NOTIFY without FIN first, then UNSET frames with the same
// ids, FIN on the last only.
func TestFragmentation(t *testing.T) {
	payload, err := messagePayload(profileLarge, 1000)
	require.NoError(t, err)
	_, err = planNotify(payload, 300, false)
	require.Error(t, err, "too large without fragmentation")

	plan, err := planNotify(payload, 300, true)
	require.NoError(t, err)
	b := plan.appendNotify(nil, 5, 1)
	require.Len(t, b, plan.wireLen(5, 1))
	var got []byte
	frames := 0
	for len(b) > 0 {
		frame, n, _, err := codec.NextFrame(b, 300)
		require.NoError(t, err)
		require.NotNil(t, frame)
		f, err := codec.ParseFrame(frame)
		require.NoError(t, err)
		require.Equal(t, uint64(5), f.StreamID)
		require.Equal(t, uint64(1), f.FrameID)
		if frames == 0 {
			require.Equal(t, codec.FrameNotify, f.Type)
		} else {
			require.Equal(t, codec.FrameUnset, f.Type)
		}
		last := n == len(b)
		require.Equal(t, last, f.Flags.Fin(), "FIN on the last fragment only")
		if !last {
			require.Len(t, frame, 275, "full fragments carry max-frame-size-32 bytes")
		}
		got = append(got, f.Payload...)
		b = b[n:]
		frames++
	}
	require.Equal(t, plan.frames, frames)
	require.Equal(t, payload, got, "fragments concatenate to the payload")

	small, err := messagePayload(profileCheck, 0)
	require.NoError(t, err)
	plan, err = planNotify(small, 16380, true)
	require.NoError(t, err)
	require.Equal(t, 1, plan.frames, "fits: one frame even with fragmentation")
	f, err := codec.DecodeFrame(plan.appendNotify(nil, 3, 1), 16380)
	require.NoError(t, err)
	require.True(t, f.Flags.Fin())
	require.Equal(t, codec.FrameNotify, f.Type)
}
