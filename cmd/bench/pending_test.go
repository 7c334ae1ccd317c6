package main

import (
	"math/rand/v2"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

func TestPendingTableAgainstMap(t *testing.T) {
	for _, capacity := range []int{1, 16, 64} {
		rng := rand.New(rand.NewPCG(1, uint64(capacity)))
		tab := newPendingTable(capacity)
		model := map[uint64]int{}
		var keys []uint64
		for range 4000 {
			if len(model) < capacity && (len(model) == 0 || rng.IntN(2) == 0) {
				// 2.6-style ids are dense, 3.2-style odd; mix both and
				// some far-apart ones to force collisions.
				var sid uint64
				switch rng.IntN(3) {
				case 0:
					sid = uint64(rng.IntN(4 * capacity))
				case 1:
					sid = uint64(2*rng.IntN(4*capacity) + 1)
				default:
					sid = rng.Uint64()
				}
				_, dup := model[sid]
				require.Equal(t, !dup, tab.put(sid, len(model)))
				if !dup {
					model[sid] = len(model)
					keys = append(keys, sid)
				}
			} else {
				j := rng.IntN(len(keys))
				sid := keys[j]
				keys[j] = keys[len(keys)-1]
				keys = keys[:len(keys)-1]
				i, ok := tab.get(sid)
				require.True(t, ok)
				require.Equal(t, model[sid], i)
				require.True(t, tab.del(sid))
				delete(model, sid)
				_, ok = tab.get(sid)
				require.False(t, ok)
				require.False(t, tab.del(sid))
			}
			require.Equal(t, len(model), tab.len())
			for sid, i := range model {
				got, ok := tab.get(sid)
				require.True(t, ok, "sid %d lost", sid)
				require.Equal(t, i, got)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	tab := newPendingTable(4)
	slots := make([]slot, 4)
	slots[2] = slot{sid: 7, fid: 1, busy: true}
	require.True(t, tab.put(7, 2))

	i, kind := match(tab, slots, 7, 1)
	require.Equal(t, errNone, kind)
	require.Equal(t, 2, i)

	_, kind = match(tab, slots, 9, 1)
	require.Equal(t, errUnknownID, kind, "a stream-id not in flight")
	_, kind = match(tab, slots, 7, 2)
	require.Equal(t, errWrongFrameID, kind, "the right stream-id with another frame-id")
	_, kind = match(tab, slots, 0, 0)
	require.Equal(t, errUnknownID, kind)
}

func ackPayload(t *testing.T, actions ...func([]byte) ([]byte, error)) []byte {
	var b []byte
	for _, a := range actions {
		var err error
		b, err = a(b)
		require.NoError(t, err)
	}
	return b
}

func setInt(name string, v int64) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		return codec.AppendSetVar(b, codec.ScopeTransaction, name, codec.Int64(v))
	}
}

func TestAckChecker(t *testing.T) {
	c := ackChecker{expect: []string{"score", "ok"}}
	okVar := func(b []byte) ([]byte, error) {
		return codec.AppendSetVar(b, codec.ScopeTransaction, "ok", codec.Bool(true))
	}
	unsetScore := func(b []byte) ([]byte, error) {
		return codec.AppendUnsetVar(b, codec.ScopeTransaction, "score")
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    errKind
	}{
		{"both set", ackPayload(t, setInt("score", 30), okVar), errNone},
		{"any order", ackPayload(t, okVar, setInt("score", 30)), errNone},
		{"one missing", ackPayload(t, setInt("score", 30)), errMissingVar},
		{"unset is not set", ackPayload(t, unsetScore, okVar), errMissingVar},
		{"empty ACK", nil, errMissingVar},
		{"bad action type", []byte{9, 3, 2, 1, 'x', 0}, errBadAck},
		{"truncated", ackPayload(t, setInt("score", 30))[:5], errBadAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, c.check(tc.payload))
		})
	}
	none := ackChecker{}
	require.Equal(t, errNone, none.check(nil), "without -expect-var an empty ACK is fine")
}

func TestExpiredRing(t *testing.T) {
	e := newExpiredRing(3)
	require.False(t, e.take(1))
	e.add(1)
	e.add(3)
	require.True(t, e.take(1))
	require.False(t, e.take(1), "a late ACK is recognised once")
	e.add(5)
	e.add(7)
	e.add(9) // evicts 3
	require.False(t, e.take(3))
	require.True(t, e.take(9))
	require.True(t, e.take(7))
	require.True(t, e.take(5))
}
