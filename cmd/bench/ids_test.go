package main

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseIDStyle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want idStyle
	}{{"3.4", ids32}, {"3.2", ids32}, {"3.1", ids32}, {"2.6", ids26}, {"3.0", ids26}} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseIDStyle(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	_, err := parseIDStyle("1.9")
	require.Error(t, err)
}

// sids expands a reservation into its stream-ids.
func sids(g *idGen, n int) []uint64 {
	first, step := g.reserve(n)
	out := make([]uint64, n)
	for i := range out {
		out[i] = first + uint64(i)*step
	}
	return out
}

func TestIDs32OddPerConnection(t *testing.T) {
	var global atomic.Uint64
	a, b := newIDGen(ids32, &global), newIDGen(ids32, &global)
	require.Equal(t, []uint64{1, 3, 5}, sids(&a, 3))
	require.Equal(t, []uint64{7}, sids(&a, 1))
	require.Equal(t, []uint64{9, 11}, sids(&a, 2))
	// Another connection counts on its own, from 1 again (§8.1: the same
	// numbers appear on every connection).
	require.Equal(t, []uint64{1, 3}, sids(&b, 2))
	require.Zero(t, global.Load(), "3.2 ids must not touch the process-wide counter")
}

func TestIDs26ProcessWide(t *testing.T) {
	var global atomic.Uint64
	a, b := newIDGen(ids26, &global), newIDGen(ids26, &global)
	// HAProxy's first stream is 0; the counter is shared by all connections.
	require.Equal(t, []uint64{0, 1, 2}, sids(&a, 3))
	require.Equal(t, []uint64{3, 4}, sids(&b, 2))
	require.Equal(t, []uint64{5}, sids(&a, 1))
}

func TestIDs26UniqueUnderConcurrency(t *testing.T) {
	var global atomic.Uint64
	const conns, batches, batch = 8, 200, 7
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newIDGen(ids26, &global)
			for range batches {
				ids := sids(&g, batch)
				mu.Lock()
				for _, id := range ids {
					require.False(t, seen[id], "stream-id %d handed out twice", id)
					seen[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, conns*batches*batch)
	for id := range uint64(conns * batches * batch) {
		require.True(t, seen[id], "stream-id %d missing: the counter must be dense", id)
	}
}
