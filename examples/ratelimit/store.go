package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Decision is a store's answer for one request of a client.
type Decision struct {
	// Allowed says the request is within the client's rate.
	Allowed bool
	// Remaining is the number of requests the client may still burst.
	Remaining int
	// RetryAfter is how long until the next request is allowed, when not.
	RetryAfter time.Duration
}

// Store counts the requests of each client against its rate: the
// in-process limiter (one count per agent) or Redis (one count for every
// agent that shares the server).
type Store interface {
	// Allow counts one request of client and says whether it is allowed.
	// It returns within ctx's deadline; an error means the store could not
	// say (the handler then applies its fail-open or fail-closed policy).
	Allow(ctx context.Context, client netip.Addr) (Decision, error)
}

// redisConfig configures a Redis store.
type redisConfig struct {
	// Addr is the Redis server, "host:port".
	Addr string
	// Timeout bounds each decision: dialing, waiting for a pooled
	// connection, the command and its answer. Keep it below the agent's
	// handler deadline, so that a slow Redis still gets the request an
	// answer (with the error variable) in time.
	Timeout time.Duration
	// PoolSize is the most connections to Redis: the agent's worker pool
	// size, since each running handler needs at most one.
	PoolSize int
	// Prefix is put before each client's key.
	Prefix string
	// Rate and Burst are the limit, as in config.
	Rate  float64
	Burst int
}

// redisStore keeps the limits in Redis with the GCRA algorithm of
// github.com/go-redis/redis_rate: one atomic script per request, so that
// every agent sharing the server counts a client's requests together.
type redisStore struct {
	rdb     *redis.Client
	lim     *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	timeout time.Duration
}

// newRedisStore returns a store on the Redis server of c. It does not
// connect: connections are made when needed, so an agent starts (and
// applies its policy) while Redis is down, and recovers when it is back.
func newRedisStore(c redisConfig) (*redisStore, error) {
	switch {
	case c.Addr == "":
		return nil, errors.New("redis: no address")
	case c.Timeout <= 0:
		return nil, fmt.Errorf("redis timeout %v: it must be positive", c.Timeout)
	case c.PoolSize < 1:
		return nil, fmt.Errorf("redis pool size %d: it must be at least 1", c.PoolSize)
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return nil, fmt.Errorf("rate %v: it must be positive", c.Rate)
	case c.Burst < 1:
		return nil, fmt.Errorf("burst %d: it must be at least 1", c.Burst)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:         c.Addr,
		DialTimeout:  c.Timeout,
		ReadTimeout:  c.Timeout,
		WriteTimeout: c.Timeout,
		PoolTimeout:  c.Timeout,
		PoolSize:     c.PoolSize,
		// Honour the handler's deadline too, and never retry: a retry
		// would outlive the deadline, and the policy answers meanwhile.
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	return &redisStore{
		rdb: rdb,
		lim: redis_rate.NewLimiter(rdb),
		// GCRA's emission interval is Period/Rate: one request per
		// 1/Rate seconds, whatever the rate (0.01/s included).
		limit:   redis_rate.Limit{Rate: 1, Period: time.Duration(float64(time.Second) / c.Rate), Burst: c.Burst},
		prefix:  c.Prefix,
		timeout: c.Timeout,
	}, nil
}

// Allow implements Store.
func (s *redisStore) Allow(ctx context.Context, client netip.Addr) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.lim.Allow(ctx, s.prefix+client.String(), s.limit)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: res.Allowed > 0, Remaining: res.Remaining}
	if !d.Allowed {
		d.RetryAfter = res.RetryAfter
	}
	return d, nil
}

// Close closes the connections to Redis.
func (s *redisStore) Close() error { return s.rdb.Close() }
