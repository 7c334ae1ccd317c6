package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHistogramBuckets: every value falls in the bucket whose range holds
// it, buckets are contiguous, and none is wider than 1/128 of its values.
func TestHistogramBuckets(t *testing.T) {
	check := func(v int64) {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		require.True(t, lo <= v && v <= hi, "value %d in bucket %d [%d, %d]", v, i, lo, hi)
		if lo >= subBuckets { // below, every bucket holds one value
			require.LessOrEqual(t, float64(hi-lo+1)/float64(lo), 1.0/subBuckets, "bucket %d [%d, %d]", i, lo, hi)
		}
	}
	for v := range int64(1 << 16) {
		check(v)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		check(rng.Int64N(maxTrackedNS * 4))
	}
	for i := 1; i <= bucketOf(maxTrackedNS); i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		require.Equal(t, prevHi+1, lo, "bucket %d follows bucket %d", i, i-1)
	}
}

// TestHistogramPercentiles compares with exact percentiles of the same
// values: never below, and within one bucket (under 0.8%) above.
func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name string
		gen  func() int64
	}{
		{"uniform 1..10000", func() int64 { return 1 + rng.Int64N(10000) }},
		{"exponential, mean 200us", func() int64 { return 1 + int64(rng.ExpFloat64()*200e3) }},
		{"bimodal 50us and 20ms", func() int64 {
			if rng.IntN(100) < 95 {
				return 50e3 + rng.Int64N(5e3)
			}
			return 20e6 + rng.Int64N(1e6)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistogram(maxTrackedNS)
			vals := make([]int64, 20000)
			var sum float64
			for i := range vals {
				vals[i] = tc.gen()
				h.record(vals[i])
				sum += float64(vals[i])
			}
			sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
			require.Equal(t, uint64(len(vals)), h.count())
			assert.InDelta(t, sum/float64(len(vals)), h.mean(), 1e-6*sum)
			assert.Equal(t, vals[len(vals)-1], h.maximum())
			for _, p := range []float64{0.1, 50, 90, 99, 99.9, 100} {
				rank := int(math.Ceil(p * float64(len(vals)) / 100)) // the nearest-rank method
				exact := vals[max(rank, 1)-1]
				got := h.percentile(p)
				assert.GreaterOrEqual(t, got, exact, "p%v", p)
				assert.LessOrEqual(t, float64(got-exact), float64(exact)/subBuckets, "p%v: %d against %d", p, got, exact)
			}
			assert.Equal(t, h.maximum(), h.percentile(100))
		})
	}
}

func TestHistogramMergeAndEdges(t *testing.T) {
	empty := newHistogram(maxTrackedNS)
	assert.Zero(t, empty.count())
	assert.Zero(t, empty.mean())
	assert.Zero(t, empty.maximum())
	assert.Zero(t, empty.percentile(99))

	a, b, all := newHistogram(maxTrackedNS), newHistogram(maxTrackedNS), newHistogram(maxTrackedNS)
	for v := int64(1); v <= 5000; v++ {
		if v%3 == 0 {
			a.record(v * 1000)
		} else {
			b.record(v * 1000)
		}
		all.record(v * 1000)
	}
	m := newHistogram(maxTrackedNS)
	m.merge(a)
	m.merge(b)
	m.merge(empty) // an empty one changes nothing, its minimum included
	require.Equal(t, all.counts, m.counts)
	assert.Equal(t, all.count(), m.count())
	assert.Equal(t, all.maximum(), m.maximum())
	assert.Equal(t, all.min, m.min)
	assert.InDelta(t, all.mean(), m.mean(), 1e-9)
	for _, p := range []float64{1, 50, 99, 99.9} {
		assert.Equal(t, all.percentile(p), m.percentile(p), "p%v", p)
	}

	// Past the range: counted in the last bucket, the maximum exact.
	h := newHistogram(1000)
	h.record(10)
	h.record(1_000_000)
	assert.Equal(t, int64(1_000_000), h.maximum())
	assert.Equal(t, int64(1_000_000), h.percentile(100))
	assert.Equal(t, int64(10), h.percentile(50))
	// Exact below subBuckets; a negative value counts as 0.
	h = newHistogram(maxTrackedNS)
	h.record(-5)
	h.record(7)
	assert.Equal(t, int64(0), h.percentile(50))
	assert.Equal(t, int64(7), h.percentile(100))
}
