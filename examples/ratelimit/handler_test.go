package main

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func check(ip string) spoetest.Message {
	return spoetest.NewMessage("check-rate", spoetest.IP("ip", ip))
}

func allowed(remaining int) map[string]any {
	return map[string]any{"txn.limited": false, "txn.remaining": int64(remaining)}
}

func limited(retryAfter int) map[string]any {
	return map[string]any{"txn.limited": true, "txn.remaining": int64(0), "txn.retry_after": int64(retryAfter)}
}

// TestLimiter: a burst of 3 at 1 request per second, step by step.
func TestLimiter(t *testing.T) {
	clk := newClock()
	l, err := newLimiter(config{Rate: 1, Burst: 3, Idle: time.Minute, MaxClients: 1000, IPv6Prefix: 64, Now: clk.Now})
	require.NoError(t, err)
	steps := []struct {
		name    string
		advance time.Duration
		ip      string
		want    map[string]any
	}{
		{"first", 0, "192.0.2.1", allowed(2)},
		{"second", 0, "192.0.2.1", allowed(1)},
		{"third", 0, "192.0.2.1", allowed(0)},
		{"over the burst", 0, "192.0.2.1", limited(1)},
		{"another client", 0, "192.0.2.2", allowed(2)},
		{"IPv4-mapped is the same client", 0, "::ffff:192.0.2.1", limited(1)},
		{"half a token later", 500 * time.Millisecond, "192.0.2.1", limited(1)},
		{"a token later", 500 * time.Millisecond, "192.0.2.1", allowed(0)},
		{"limited again", 0, "192.0.2.1", limited(1)},
		{"IPv6", 0, "2001:db8:1:2::1", allowed(2)},
		{"same /64", 0, "2001:db8:1:2:ffff::9", allowed(1)},
		{"another /64", 0, "2001:db8:1:3::1", allowed(2)},
		{"refilled after the burst's time", 3 * time.Second, "192.0.2.1", allowed(2)},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		res := spoetest.Run(t, l.HandleMessage, check(s.ip))
		require.Equal(t, 0, res.Code(), s.name)
		require.Equal(t, s.want, res.Map(), s.name)
	}
}

func TestLimiter_RetryAfter(t *testing.T) {
	clk := newClock()
	l, err := newLimiter(config{Rate: 0.1, Burst: 1, MaxClients: 10, IPv6Prefix: 64, Now: clk.Now})
	require.NoError(t, err)
	require.Equal(t, allowed(0), spoetest.Run(t, l.HandleMessage, check("192.0.2.1")).Map())
	require.Equal(t, limited(10), spoetest.Run(t, l.HandleMessage, check("192.0.2.1")).Map())
	clk.Advance(2500 * time.Millisecond)
	require.Equal(t, limited(8), spoetest.Run(t, l.HandleMessage, check("192.0.2.1")).Map(), "7.5 s rounds up")
}

func TestLimiter_NoIP(t *testing.T) {
	l, err := newLimiter(config{Rate: 1, Burst: 1, MaxClients: 10, IPv6Prefix: 64})
	require.NoError(t, err)
	for _, m := range []spoetest.Message{
		spoetest.NewMessage("check-rate"),
		spoetest.NewMessage("check-rate", spoetest.Null("ip")),
		spoetest.NewMessage("check-rate", spoetest.Str("ip", "192.0.2.1")),
	} {
		res := spoetest.Run(t, l.HandleMessage, m)
		require.ErrorIs(t, res.Err, errNoIP)
		require.Equal(t, agent.ErrCodeHandler, res.Code())
		require.Empty(t, res.Map())
	}
}

// TestLimiter_Memory: memory stays bounded by MaxClients, and idle clients
// are forgotten.
func TestLimiter_Memory(t *testing.T) {
	clk := newClock()
	const maxClients = 4 * shards
	l, err := newLimiter(config{Rate: 1, Burst: 2, Idle: time.Minute, MaxClients: maxClients, IPv6Prefix: 64, Now: clk.Now})
	require.NoError(t, err)
	for i := range 50 * maxClients {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(ip)
		require.LessOrEqual(t, l.clients(), maxClients)
	}
	require.Greater(t, l.clients(), maxClients/2)

}

// TestLimiter_Idle: idle clients are forgotten; an active one keeps its
// bucket.
func TestLimiter_Idle(t *testing.T) {
	clk := newClock()
	l, err := newLimiter(config{Rate: 1, Burst: 2, Idle: time.Minute, MaxClients: 100_000, IPv6Prefix: 64, Now: clk.Now})
	require.NoError(t, err)
	const idle, touch = 5000, 2000
	for i := range idle {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	require.Equal(t, idle, l.clients())

	clk.Advance(time.Minute)
	ip := netip.MustParseAddr("192.0.2.1")
	l.allow(ip)
	l.allow(ip) // its bucket is empty now
	// 2000 new clients touch every shard, which sweeps it (one is missed
	// with odds of 64·(63/64)^2000, about 10^-12).
	for i := range touch {
		l.allow(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}))
	}
	ok, _, _ := l.allow(ip)
	require.False(t, ok, "the active client kept its (empty) bucket")
	require.Equal(t, touch+1, l.clients(), "the idle clients are gone")
}

// TestLimiter_IdleAtLeastFill: forgetting a client must not refill its
// bucket early.
func TestLimiter_IdleAtLeastFill(t *testing.T) {
	l, err := newLimiter(config{Rate: 0.5, Burst: 10, Idle: time.Second, MaxClients: 10, IPv6Prefix: 64})
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, l.cfg.Idle)
}

func TestNewLimiter_Invalid(t *testing.T) {
	good := config{Rate: 1, Burst: 1, MaxClients: 1, IPv6Prefix: 64}
	for _, tt := range []struct {
		name string
		edit func(c *config)
	}{
		{"zero rate", func(c *config) { c.Rate = 0 }},
		{"negative rate", func(c *config) { c.Rate = -1 }},
		{"zero burst", func(c *config) { c.Burst = 0 }},
		{"no clients", func(c *config) { c.MaxClients = 0 }},
		{"prefix 0", func(c *config) { c.IPv6Prefix = 0 }},
		{"prefix 129", func(c *config) { c.IPv6Prefix = 129 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			_, err := newLimiter(c)
			require.Error(t, err)
		})
	}
}

// TestAgent: served in process, concurrent NOTIFYs for one client allow
// exactly the burst.
func TestAgent(t *testing.T) {
	a, _, err := newAgent(zap.NewNop(), config{Rate: 0.001, Burst: 20, MaxClients: 100, IPv6Prefix: 64})
	require.NoError(t, err)
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	for _, style := range []spoetest.Style{spoetest.HAProxy26, spoetest.HAProxy32} {
		t.Run(style.String(), func(t *testing.T) {
			c := spoetest.MustDial(t, srv.Addr, spoetest.WithStyle(style))
			msgs := make([]spoetest.Message, 30)
			ip := fmt.Sprintf("2001:db8:%d::1", style)
			for i := range msgs {
				msgs[i] = check(ip)
			}
			n := 0
			for _, ack := range c.Pipeline(msgs...) {
				if l, _ := ack.Bool(agent.ScopeTransaction, "limited"); !l {
					n++
				}
			}
			require.Equal(t, 20, n)
		})
	}
}

func BenchmarkLimiter(b *testing.B) {
	l, err := newLimiter(config{Rate: 1e9, Burst: 1e9, MaxClients: 1 << 16, IPv6Prefix: 64})
	require.NoError(b, err)
	ips := make([]netip.Addr, 1024)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.allow(ips[i%len(ips)])
			i++
		}
	})
}
