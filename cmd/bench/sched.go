package main

import "time"

// schedule is the open-loop plan of one connection: with a total rate of
// rate NOTIFY/s spread over conns connections, connection idx sends its k-th
// NOTIFY at
//
//	start + (k*conns + idx) / rate
//
// so that the union of all connections is one evenly spaced stream at rate,
// with no drift (every time is computed from start, never accumulated).
// Latency is measured from these intended times, not from the moment a
// NOTIFY could actually be written, so a stalled agent is charged for the
// whole delay it caused (no coordinated omission).
type schedule struct {
	start time.Duration // on the run's clock
	rate  float64       // NOTIFY/s over all connections
	conns int
	idx   int
}

// at returns the intended send time of the k-th NOTIFY.
func (s schedule) at(k int64) time.Duration {
	return s.start + time.Duration(float64(k*int64(s.conns)+int64(s.idx))*1e9/s.rate)
}

// due returns how many NOTIFYs (k = 0 … due-1) are due at or before now.
func (s schedule) due(now time.Duration) int64 {
	if now < s.start {
		return 0
	}
	// The largest k with k*conns+idx <= (now-start)*rate/1e9.
	pos := float64(now-s.start) * s.rate / 1e9
	k := max(int64(pos)-int64(s.idx), -1)/int64(s.conns) + 1
	k = max(k, 0)
	// Float rounding can be off by one near a boundary: settle on at().
	for k > 0 && s.at(k-1) > now {
		k--
	}
	for s.at(k) <= now {
		k++
	}
	return k
}
