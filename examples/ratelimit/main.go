// Command ratelimit is an SPOE agent that limits the request rate of each
// client IP address (IPv6 clients by /64): HAProxy sends it the source
// address of each HTTP request; it answers with txn.ratelimit.limited,
// txn.ratelimit.remaining and, when limited, txn.ratelimit.retry_after,
// and HAProxy answers 429 to limited requests (see README.md and the
// configuration files beside this one).
//
// By default each agent counts in its own memory; with -store redis every
// agent that shares the Redis server counts a client's requests together,
// so that a fleet of agents gives a client its limit once, not once per
// agent:
//
//	go run . -addr 127.0.0.1:12345 -rate 10 -burst 20
//	go run . -addr 127.0.0.1:12345 -rate 10 -burst 20 -store redis -redis-addr 127.0.0.1:6379
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
)

// timeout is the agent's per-message deadline: below spoe.conf's
// "timeout processing" (200ms), so that a late answer is never sent.
const timeout = 100 * time.Millisecond

// Store names for -store.
const (
	storeLocal = "local"
	storeRedis = "redis"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:12345", `address to listen on: "host:port", or "unix:/path"`)
	var c config
	flag.Float64Var(&c.Rate, "rate", 10, "sustained requests per second per client")
	flag.IntVar(&c.Burst, "burst", 20, "requests a client may make at once")
	flag.DurationVar(&c.Idle, "idle", 10*time.Minute, "how long a client without requests is remembered (at least burst/rate; local store)")
	flag.IntVar(&c.MaxClients, "max-clients", 100_000, "most clients remembered at once (local store)")
	flag.IntVar(&c.IPv6Prefix, "ipv6-prefix", 64, "IPv6 clients are counted by network of this prefix length")
	flag.StringVar(&c.Store, "store", storeLocal, `where requests are counted: "local" (this agent's memory) or "redis" (shared by every agent using the server)`)
	flag.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "Redis server (-store redis)")
	flag.DurationVar(&c.RedisTimeout, "redis-timeout", 50*time.Millisecond, "bound on each Redis decision; below the agent's 100ms deadline")
	onError := flag.String("on-store-error", "open", `when the store cannot answer (Redis down or slow): "open" lets the request through, "closed" limits it; either way txn.ratelimit.agent_error is set`)
	flag.IntVar(&c.Workers, "workers", 64, "handlers run at once; also the size of the Redis connection pool")
	lameDuck := flag.Duration("lame-duck", agent.DefaultLameDuck, "on SIGTERM, fail HAProxy's health checks for this long while serving, before draining (0: none)")
	shutdownTimeout := flag.Duration("shutdown-timeout", agent.DefaultShutdownTimeout, "bound on the drain that follows the lame-duck period")
	flag.Parse()
	switch *onError {
	case "open":
	case "closed":
		c.FailClosed = true
	default:
		fmt.Fprintf(os.Stderr, "ratelimit: -on-store-error %q: want open or closed\n", *onError)
		os.Exit(2)
	}
	if *lameDuck <= 0 {
		*lameDuck = agent.NoLameDuck
	}

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit:", err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	a, closer, err := newAgent(log, c, agent.WithLameDuck(*lameDuck), agent.WithShutdownTimeout(*shutdownTimeout))
	if err != nil {
		log.Fatal("configuration", zap.Error(err))
	}
	defer closer.Close()
	log.Info("ratelimit", zap.String("store", c.Store), zap.Float64("rate", c.Rate), zap.Int("burst", c.Burst), zap.Bool("fail_closed", c.FailClosed))
	if err := a.Run(*addr); err != nil { // lame duck, then drain, on SIGTERM/SIGINT
		log.Fatal("agent", zap.Error(err))
	}
}

// nopCloser closes nothing.
type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// newAgent returns the agent of c: the check-rate message of spoe.conf is
// handled with c's store and policy, a failing handler sets
// txn.ratelimit.agent_error, and opts come last. The closer releases the store.
func newAgent(log *zap.Logger, c config, opts ...agent.Option) (*agent.Agent, io.Closer, error) {
	var (
		store  Store
		closer io.Closer = nopCloser{}
	)
	workers := c.Workers
	if workers <= 0 {
		workers = 64
	}
	switch c.Store {
	case "", storeLocal:
		l, err := newLimiter(c)
		if err != nil {
			return nil, nil, err
		}
		store = l
	case storeRedis:
		if c.RedisTimeout >= timeout {
			return nil, nil, fmt.Errorf("redis timeout %v: it must be below the agent's deadline, %v", c.RedisTimeout, timeout)
		}
		if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
			return nil, nil, fmt.Errorf("IPv6 prefix /%d: it must be from /1 to /128", c.IPv6Prefix)
		}
		r, err := newRedisStore(redisConfig{
			Addr: c.RedisAddr, Timeout: c.RedisTimeout, PoolSize: workers,
			Prefix: "ratelimit:", Rate: c.Rate, Burst: c.Burst,
		})
		if err != nil {
			return nil, nil, err
		}
		store, closer = r, r
	default:
		return nil, nil, errors.New(`store: want "local" or "redis", not "` + c.Store + `"`)
	}
	a := agent.New(append([]agent.Option{
		agent.WithLogger(log),
		agent.WithTimeout(timeout),
		agent.WithWorkers(workers),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
	}, opts...)...)
	a.Handle("check-rate", &handler{store: store, ipv6Prefix: c.IPv6Prefix, failClosed: c.FailClosed})
	return a, closer, nil
}
