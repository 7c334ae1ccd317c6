//go:build !race

package main

import (
	"sync/atomic"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// TestZeroAllocsPerNotify pins that the generator's per-NOTIFY work (ids,
// the in-flight table, encoding, ACK matching and checking, the histogram)
// allocates nothing, so that it is not what a benchmark measures.
func TestZeroAllocsPerNotify(t *testing.T) {
	payload, err := messagePayload(profileCheck, 0)
	require.NoError(t, err)
	plan, err := planNotify(payload, 16380, false)
	require.NoError(t, err)
	var global atomic.Uint64
	g := newIDGen(ids26, &global)
	tab := newPendingTable(64)
	slots := make([]slot, 64)
	buf := make([]byte, 0, 64*plan.wireLen(1<<40, 1))
	ack, err := codec.AppendSetVar(nil, codec.ScopeTransaction, "score", codec.Int64(30))
	require.NoError(t, err)
	ack = codec.AppendAck(nil, 0, 1, ack)
	c := ackChecker{expect: []string{"score"}}
	h := newHist()
	allocs := testing.AllocsPerRun(10000, func() {
		first, _ := g.reserve(1)
		slots[0] = slot{sid: first, fid: frameID, busy: true}
		tab.put(first, 0)
		buf = plan.appendNotify(buf[:0], first, frameID)
		f, _ := codec.ParseFrame(ack[4:])
		i, kind := match(tab, slots, first, f.FrameID)
		if kind != errNone || c.check(f.Payload) != errNone {
			panic("mismatch")
		}
		tab.del(slots[i].sid)
		h.record(12345)
	})
	require.Zero(t, allocs)
}
