package main

import (
	"math"
	"math/bits"
)

// histogram counts latencies in nanoseconds in log-linear buckets: every
// power of two is split into subBuckets equal buckets, so a bucket is at
// most 1/subBuckets of its values wide (2 significant digits: under 0.8%),
// and values below subBuckets are counted exactly. Recording is one index
// computation and an increment; nothing allocates after newHistogram.
//
// It replaces an HDR histogram library: the benchmark client is part of the
// library's module (cmd/bench), and a user who adds spoe-forge to their
// go.mod must not get a benchmark's dependency with it.
type histogram struct {
	counts   []uint64
	total    uint64
	sum      float64 // of every value recorded, for the mean
	min, max int64
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // 128 per power of two
)

// newHistogram returns a histogram whose buckets cover 1..highest; larger
// values are counted in the last bucket (the maximum stays exact).
func newHistogram(highest int64) *histogram {
	return &histogram{counts: make([]uint64, bucketOf(max(highest, 1))+1), min: math.MaxInt64}
}

// bucketOf returns the index of v's bucket (v >= 0).
func bucketOf(v int64) int {
	u := uint64(v)
	if u < subBuckets {
		return int(u)
	}
	shift := bits.Len64(u) - subBits - 1 // u>>shift is in [subBuckets, 2*subBuckets)
	return (shift+1)*subBuckets + int(u>>shift) - subBuckets
}

// bucketRange returns the smallest and largest values of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subBuckets {
		return int64(i), int64(i)
	}
	shift := i/subBuckets - 1
	mant := int64(i%subBuckets + subBuckets)
	return mant << shift, (mant+1)<<shift - 1
}

// record counts v; a negative v counts as 0.
func (h *histogram) record(v int64) {
	v = max(v, 0)
	i := min(bucketOf(v), len(h.counts)-1)
	h.counts[i]++
	h.total++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// merge adds o's counts to h; both must have been made with the same
// highest value.
func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// count returns how many values were recorded.
func (h *histogram) count() uint64 { return h.total }

// mean returns the mean of the values recorded, 0 if none.
func (h *histogram) mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// maximum returns the largest value recorded, exactly; 0 if none.
func (h *histogram) maximum() int64 {
	if h.total == 0 {
		return 0
	}
	return h.max
}

// percentile returns the value at or below which p percent of the values
// recorded lie: the largest value of the bucket that holds the rank
// ceil(p/100 * count), bounded by the exact minimum and maximum, so that
// it never understates a latency by more than its bucket's width. 0 if
// nothing was recorded.
func (h *histogram) percentile(p float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(h.total) / 100))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			if i == len(h.counts)-1 {
				return h.max // the last bucket also holds the values past its range
			}
			_, hi := bucketRange(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}
