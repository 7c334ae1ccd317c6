package main

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduleEvenlySpacedAcrossConnections(t *testing.T) {
	const rate, conns = 1000.0, 3 // one NOTIFY per ms in total
	start := 5 * time.Millisecond
	var all []time.Duration
	for i := range conns {
		s := schedule{start: start, rate: rate, conns: conns, idx: i}
		for k := range int64(100) {
			all = append(all, s.at(k))
		}
		// Each connection sends every conns/rate = 3 ms.
		require.Equal(t, start+time.Duration(i)*time.Millisecond, s.at(0))
		require.Equal(t, 3*time.Millisecond, s.at(1)-s.at(0))
	}
	slices.Sort(all)
	for j, at := range all {
		require.Equal(t, start+time.Duration(j)*time.Millisecond, at, "the union must be one stream at the total rate")
	}
}

func TestScheduleNoDrift(t *testing.T) {
	// 3 NOTIFY/s has no exact interval in ns; times are computed from
	// start, so the millionth is still where it belongs.
	s := schedule{rate: 3, conns: 1}
	require.InDelta(t, float64(1_000_000)/3*1e9, float64(s.at(1_000_000)), 1e3)
	s = schedule{rate: 70000, conns: 16, idx: 5}
	k := int64(10_000_000)
	want := float64(k*16+5) * 1e9 / 70000
	require.InDelta(t, want, float64(s.at(k)), 1e3)
}

func TestScheduleDue(t *testing.T) {
	for _, s := range []schedule{
		{rate: 1000, conns: 1},
		{rate: 1000, conns: 3, idx: 2},
		{rate: 3, conns: 2, idx: 1, start: time.Second},
		{rate: 123456.7, conns: 16, idx: 9, start: 7 * time.Millisecond},
	} {
		// due(now) is the number of k with at(k) <= now, checked by brute
		// force around every send time and in between.
		brute := func(now time.Duration) int64 {
			var n int64
			for s.at(n) <= now {
				n++
			}
			return n
		}
		for k := range int64(300) {
			at := s.at(k)
			for _, now := range []time.Duration{at - 1, at, at + 1, (at + s.at(k+1)) / 2} {
				require.Equal(t, brute(now), s.due(now), "%+v at %v", s, now)
			}
		}
		require.Zero(t, s.due(s.start-1))
	}
}

func TestScheduleRateOverWindow(t *testing.T) {
	// Over a whole second, C connections together are due exactly rate
	// NOTIFYs (±1 per connection at the edge).
	const rate, conns = 20000.0, 16
	var total int64
	for i := range conns {
		total += schedule{rate: rate, conns: conns, idx: i}.due(time.Second - 1)
	}
	require.InDelta(t, rate, float64(total), conns)
}
