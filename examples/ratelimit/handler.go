package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"golang.org/x/time/rate"
)

// The variables the handler sets, in the transaction scope (HAProxy adds
// the var-prefix: txn.ratelimit.limited with spoe.conf).
const (
	varLimited    = "limited"     // bool: the request is over the client's rate
	varRemaining  = "remaining"   // int: requests the client may still burst
	varRetryAfter = "retry_after" // int: seconds until the next request is allowed, when limited
)

// errNoIP: the message carries no "ip" argument of an address type.
var errNoIP = errors.New(`no "ip" argument (IPV4 or IPV6)`)

// shards spreads clients over independently locked maps.
const shards = 64

// evictSample is how many clients are looked at to pick one to evict when
// a shard is full and none is idle (an approximate LRU).
const evictSample = 8

// config configures a limiter.
type config struct {
	// Rate is the sustained number of requests per second per client, and
	// Burst the number a client may make at once.
	Rate  float64
	Burst int
	// Idle is how long a client is remembered without requests. It is at
	// least the time its bucket takes to fill: forgetting a client then
	// changes nothing.
	Idle time.Duration
	// MaxClients bounds the clients remembered at once.
	MaxClients int
	// IPv6Prefix groups IPv6 clients by network: a host usually has a
	// whole /64.
	IPv6Prefix int
	// Now returns the current time; time.Now when nil.
	Now func() time.Time

	// Store is where requests are counted: "local" (the default) or
	// "redis".
	Store string
	// RedisAddr and RedisTimeout are the Redis server and the bound on
	// each decision (-store redis).
	RedisAddr    string
	RedisTimeout time.Duration
	// FailClosed limits the requests the store cannot decide (Redis down
	// or slow); by default they are let through.
	FailClosed bool
	// Workers is the agent's handler pool, and the Redis pool's size.
	Workers int
}

// limiter is the in-process Store, the default: a token bucket per client
// (golang.org/x/time/rate), in bounded memory. Each agent has its own, so
// N agents behind one HAProxy backend give a client N times its limit.
type limiter struct {
	cfg    config
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu        sync.Mutex
	clients   map[netip.Addr]*client
	max       int
	lastSweep time.Time
}

type client struct {
	bucket *rate.Limiter
	seen   time.Time
}

// newLimiter returns the handler for c.
func newLimiter(c config) (*limiter, error) {
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return nil, fmt.Errorf("rate %v: it must be positive", c.Rate)
	case c.Burst < 1:
		return nil, fmt.Errorf("burst %d: it must be at least 1", c.Burst)
	case c.MaxClients < 1:
		return nil, fmt.Errorf("max clients %d: it must be at least 1", c.MaxClients)
	case c.IPv6Prefix < 1 || c.IPv6Prefix > 128:
		return nil, fmt.Errorf("IPv6 prefix /%d: it must be from /1 to /128", c.IPv6Prefix)
	}
	fill := time.Duration(float64(c.Burst) / c.Rate * float64(time.Second))
	c.Idle = max(c.Idle, fill)
	if c.Now == nil {
		c.Now = time.Now
	}
	l := &limiter{cfg: c, seed: maphash.MakeSeed()}
	perShard := (c.MaxClients + shards - 1) / shards
	for i := range l.shards {
		l.shards[i] = shard{clients: make(map[netip.Addr]*client), max: perShard}
	}
	return l, nil
}

// HandleMessage implements agent.Handler, with the limiter as the store.
func (l *limiter) HandleMessage(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	h := handler{store: l, ipv6Prefix: l.cfg.IPv6Prefix}
	return h.HandleMessage(ctx, m, act)
}

// handler is the handler of the check-rate message: it asks its store
// about the client of each request.
type handler struct {
	store      Store
	ipv6Prefix int
	// failClosed says what a store error means: the request is limited
	// (true) or let through (false). Either way the handler returns the
	// error, so the agent sets txn.ratelimit.agent_error.
	failClosed bool
}

// HandleMessage implements agent.Handler.
func (h *handler) HandleMessage(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, ok := m.IP("ip")
	if !ok {
		return errNoIP // the agent sets txn.ratelimit.agent_error; HAProxy lets the request through
	}
	d, err := h.store.Allow(ctx, clientKey(ip, h.ipv6Prefix))
	if err != nil {
		act.SetBool(agent.ScopeTransaction, varLimited, h.failClosed)
		// %v, not %w: a store that timed out returns a context error,
		// which the agent would take for a handler that missed its own
		// deadline (agent.ErrCodeTimeout), dropping the policy's verdict.
		// This is a handler error (agent.ErrCodeHandler) whose actions
		// stand.
		return fmt.Errorf("rate store: %v", err)
	}
	act.SetBool(agent.ScopeTransaction, varLimited, !d.Allowed)
	act.SetInt(agent.ScopeTransaction, varRemaining, int64(d.Remaining))
	if !d.Allowed {
		act.SetInt(agent.ScopeTransaction, varRetryAfter, int64(math.Ceil(d.RetryAfter.Seconds())))
	}
	return nil
}

// clientKey returns the address a client is counted by: the address itself
// for IPv4 (an IPv4-mapped IPv6 address is the IPv4 one), its network of
// length prefix for IPv6.
func clientKey(ip netip.Addr, prefix int) netip.Addr {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip
	}
	p, _ := ip.WithZone("").Prefix(prefix)
	return p.Addr()
}

// Allow implements Store: the in-process token bucket of client.
func (l *limiter) Allow(_ context.Context, client netip.Addr) (Decision, error) {
	ok, remaining, retry := l.allowKey(client)
	return Decision{Allowed: ok, Remaining: remaining, RetryAfter: retry}, nil
}

// allow takes one token from ip's bucket if it has one. It returns whether
// it did, the whole tokens left, and how long until the next token when it
// did not.
func (l *limiter) allow(ip netip.Addr) (allowed bool, remaining int, retry time.Duration) {
	return l.allowKey(clientKey(ip, l.cfg.IPv6Prefix))
}

// allowKey is allow for a client's key.
func (l *limiter) allowKey(k netip.Addr) (allowed bool, remaining int, retry time.Duration) {
	now := l.cfg.Now()
	s := &l.shards[maphash.Comparable(l.seed, k)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSweep) >= l.cfg.Idle {
		s.sweep(now, l.cfg.Idle)
	}
	c := s.clients[k]
	if c == nil {
		if len(s.clients) >= s.max {
			s.sweep(now, l.cfg.Idle)
			if len(s.clients) >= s.max {
				s.evict()
			}
		}
		c = &client{bucket: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
		s.clients[k] = c
	}
	c.seen = now
	allowed = c.bucket.AllowN(now, 1)
	tokens := c.bucket.TokensAt(now)
	if !allowed {
		retry = time.Duration((1 - tokens) / l.cfg.Rate * float64(time.Second))
	}
	return allowed, max(int(tokens), 0), retry
}

// sweep forgets the clients idle for idle or longer.
func (s *shard) sweep(now time.Time, idle time.Duration) {
	for k, c := range s.clients {
		if now.Sub(c.seen) >= idle {
			delete(s.clients, k)
		}
	}
	s.lastSweep = now
}

// evict forgets the least recently seen of a few clients.
func (s *shard) evict() {
	var oldest netip.Addr
	var seen time.Time
	n := 0
	for k, c := range s.clients { // map order is unspecified: a sample
		if n == 0 || c.seen.Before(seen) {
			oldest, seen = k, c.seen
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.clients, oldest)
}

// clients returns the number of clients remembered.
func (l *limiter) clients() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].clients)
		l.shards[i].mu.Unlock()
	}
	return n
}
