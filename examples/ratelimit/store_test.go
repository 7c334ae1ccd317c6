package main

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/redistest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestRedisStore: two stores on one Redis server (two agents) count a
// client's requests together: the burst is given once, then the client is
// limited with a Retry-After; another client has its own count.
func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	newStore := func() *redisStore {
		s, err := newRedisStore(redisConfig{Addr: srv.Addr, Timeout: 50 * time.Millisecond, PoolSize: 4, Prefix: "t:", Rate: 0.5, Burst: 5})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := newStore(), newStore()
	client := netip.MustParseAddr("192.0.2.1")
	ctx := context.Background()
	for i := range 5 {
		s := a
		if i%2 == 1 {
			s = b
		}
		d, err := s.Allow(ctx, client)
		require.NoError(t, err)
		require.True(t, d.Allowed, "request %d", i)
		require.Equal(t, 4-i, d.Remaining, "request %d", i)
	}
	for _, s := range []*redisStore{a, b} {
		d, err := s.Allow(ctx, client)
		require.NoError(t, err)
		require.False(t, d.Allowed, "over the burst, on either agent")
		require.InDelta(t, 2*time.Second, d.RetryAfter, float64(200*time.Millisecond), "one request per 2 s")
	}
	d, err := a.Allow(ctx, netip.MustParseAddr("192.0.2.2"))
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, 4, d.Remaining)

	_, err = newRedisStore(redisConfig{Addr: srv.Addr, Timeout: 0, PoolSize: 1, Rate: 1, Burst: 1})
	require.Error(t, err)
	_, _, err = newAgent(zap.NewNop(), config{Store: storeRedis, RedisAddr: srv.Addr, RedisTimeout: timeout, Rate: 1, Burst: 1, IPv6Prefix: 64})
	require.ErrorContains(t, err, "below the agent's deadline")
}

// TestRedisUnavailable: an agent on Redis, served in process, while Redis
// is killed, then paused (it hangs), then back. Meanwhile every NOTIFY is
// answered within the agent's deadline with the policy's verdict and the
// error variable (1), goroutines do not pile up, and once Redis is back
// the limits apply again.
func TestRedisUnavailable(t *testing.T) {
	for _, closed := range []bool{false, true} {
		name := "fail open"
		if closed {
			name = "fail closed"
		}
		t.Run(name, func(t *testing.T) {
			rs := redistest.Start(t)
			a, closer, err := newAgent(zap.NewNop(), config{
				Store: storeRedis, RedisAddr: rs.Addr, RedisTimeout: 30 * time.Millisecond,
				FailClosed: closed, Workers: 16, Rate: 0.001, Burst: 3, IPv6Prefix: 64,
			})
			require.NoError(t, err)
			defer closer.Close()
			srv := spoetest.NewServer(a)
			t.Cleanup(func() { require.NoError(t, srv.Close()) })
			c := spoetest.MustDial(t, srv.Addr, spoetest.WithStyle(spoetest.HAProxy32))

			// verdicts sends n NOTIFYs for one client, pipelined, and
			// counts the limited ones and the failed ones; each must be
			// answered within the agent's deadline.
			verdicts := func(ip string, n int) (limited, failed int) {
				t.Helper()
				msgs := make([]spoetest.Message, n)
				for i := range msgs {
					msgs[i] = check(ip)
				}
				start := time.Now()
				for _, ack := range c.Pipeline(msgs...) {
					if l, _ := ack.Bool(agent.ScopeTransaction, "limited"); l {
						limited++
					}
					if code, ok := ack.Int(agent.ScopeTransaction, "agent_error"); ok {
						require.EqualValues(t, agent.ErrCodeHandler, code, "the store's failure is a handler error")
						failed++
					}
				}
				require.Less(t, time.Since(start), timeout+150*time.Millisecond, "NOTIFYs waited past the agent's deadline")
				return limited, failed
			}
			// Warm up: the first call connects to Redis and loads the
			// limiter's script, which can take longer than the 30 ms Redis
			// timeout on a cold, loaded machine.
			for i := 0; ; i++ {
				ack := c.Notify(check("192.0.2.250"))
				if _, failed := ack.Int(agent.ScopeTransaction, "agent_error"); !failed {
					break
				}
				require.Less(t, i, 100, "Redis never answered in time")
				time.Sleep(10 * time.Millisecond)
			}
			lim, fail := verdicts("192.0.2.1", 5)
			require.Equal(t, 2, lim, "burst 3 of 5")
			require.Zero(t, fail)

			want := 0
			if closed {
				want = 20
			}
			goroutines := runtime.NumGoroutine()
			require.NoError(t, rs.Kill())
			lim, fail = verdicts("192.0.2.2", 20)
			require.Equal(t, 20, fail, "Redis down: every answer carries the error")
			require.Equal(t, want, lim, "Redis down: the policy decides")

			require.NoError(t, rs.Restart())
			require.NoError(t, rs.Pause())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // Redis hangs: the timeouts answer
				defer wg.Done()
				lim, fail = verdicts("192.0.2.3", 20)
			}()
			wg.Wait()
			require.Equal(t, 20, fail, "Redis hung: every answer carries the error")
			require.Equal(t, want, lim, "Redis hung: the policy decides")
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+20 }, 5*time.Second, 10*time.Millisecond,
				"goroutines piled up while Redis was unavailable: %d before, %d now", goroutines, runtime.NumGoroutine())
			require.NoError(t, rs.Resume())

			// Back: a client gets its burst again, and no more.
			require.Eventually(t, func() bool {
				_, f := verdicts("192.0.2.9", 1)
				return f == 0
			}, 5*time.Second, 50*time.Millisecond, "no recovery once Redis is back")
			lim, fail = verdicts("192.0.2.4", 5)
			require.Zero(t, fail)
			require.Equal(t, 2, lim, "limits apply again")
		})
	}
}
