package agent_test

import (
	"context"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

func p99(l []time.Duration) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// TestSaturatedPoolIsFairAndBounded: 64 connections each keep 20 NOTIFYs in
// flight (HAProxy's max-waiting-frames) against a pool of 4 workers running
// 2 ms handlers, so the pool is saturated the whole time. Every connection
// must get about the same share of the workers (its ACK count and p99
// within a factor of the others') and the agent's memory must stay flat.
// The run queue used to be per connection: a worker drained one connection
// while the others slept in a retry loop, and a queue that never emptied
// grew without bound. SPOE_FAIRNESS_DURATION sets the length (default 5 s;
// the figure is 30 s).
func TestSaturatedPoolIsFairAndBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test of several seconds")
	}
	dur := 5 * time.Second
	if v := os.Getenv("SPOE_FAIRNESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		dur = d
	}
	const conns, depth = 64, 20
	a := agent.New(agent.WithWorkers(4), agent.WithTimeout(10*time.Second))
	a.Message("slow", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		time.Sleep(2 * time.Millisecond)
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	addr := start(t, a)
	msg := spoptest.Msg{Name: "slow", Args: []codec.Arg{spoptest.A("x", codec.Int64(1))}}
	stop := make(chan struct{})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	var g errgroup.Group
	stats := make([]spoptest.LoadStats, conns)
	for i := range stats {
		g.Go(func() error {
			var err error
			stats[i], err = spoptest.Pipeline(addr, depth, stop, func(sid uint64) []byte {
				return spoptest.NotifyFrame(sid, 1, msg)
			}, nil)
			return err
		})
	}
	time.Sleep(dur / 5)
	h1 := heap()
	var peakRunning int
	for deadline := time.Now().Add(dur * 4 / 5); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r, _ := a.Workers()
		peakRunning = max(peakRunning, r)
	}
	h2 := heap()
	close(stop)
	require.NoError(t, g.Wait())

	acks := make([]int, conns)
	p99s := make([]time.Duration, conns)
	total := 0
	for i, s := range stats {
		require.Equal(t, s.Sent, s.Acked, "connection %d: every NOTIFY answered", i)
		acks[i], p99s[i] = s.Acked, p99(s.Latency)
		total += s.Acked
	}
	minA, maxA := slices.Min(acks), slices.Max(acks)
	minP, maxP := slices.Min(p99s), slices.Max(p99s)
	t.Logf("%v: %d NOTIFYs (%.0f/s) on 4 workers; per connection ACKs %d..%d, p99 %v..%v; heap in use %.1f -> %.1f MiB; peak workers running %d",
		dur, total, float64(total)/dur.Seconds(), minA, maxA, minP.Round(time.Millisecond), maxP.Round(time.Millisecond),
		float64(h1)/(1<<20), float64(h2)/(1<<20), peakRunning)
	// A connection's NOTIFYs go round in batches of its depth, so counts
	// differ by a batch or so even when the share is fair.
	assert.LessOrEqual(t, maxA-minA, 2*depth+depth/2, "every connection gets a fair share of the workers")
	assert.LessOrEqual(t, float64(maxP)/float64(minP), 1.5, "per-connection p99 within 1.5x of each other")
	assert.Less(t, int64(h2)-int64(h1), int64(2<<20), "memory grows under sustained saturation")
	assert.LessOrEqual(t, peakRunning, 4, "WithWorkers bounds handlers across all connections")
}
