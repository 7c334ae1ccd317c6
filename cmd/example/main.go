// Command example is spoe-forge's sample agent. It answers the SPOE message
// "check-request" (arguments client_ip, path, user_agent) with three txn
// variables:
//
//   - access_allowed (bool): false for paths under /admin from a client
//     that is not on a loopback address;
//   - score (int): a toy risk score;
//   - test_arg (string): the path, echoed back (the docker setup shows it as
//     the X-Test-Arg response header).
//
// A user agent containing "slow" makes the handler wait 500 ms, which shows
// ACKs leaving out of order under pipelining.
//
//	go run ./cmd/example -addr 127.0.0.1:12345 [-metrics-addr 127.0.0.1:9100]
//
// With -metrics-addr it serves Prometheus metrics on /metrics and Go's
// profiler on /debug/pprof.
//
// On SIGTERM or SIGINT it fails HAProxy's health checks for -lame-duck
// (default 16s: over "check inter 5s" times "fall 3") while it keeps
// serving, so that HAProxy moves new work to other agents, then drains
// within -shutdown-timeout (default 10s). Every flag can also be set from
// the environment (SPOE_AGENT_ADDR, SPOE_LOG_LEVEL, SPOE_METRICS_ADDR,
// SPOE_LAME_DUCK, SPOE_SHUTDOWN_TIMEOUT).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	addr := flag.String("addr", envOr("SPOE_AGENT_ADDR", "127.0.0.1:12345"), "listen address: host:port or unix:/path")
	level := flag.String("log-level", envOr("SPOE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	metricsAddr := flag.String("metrics-addr", envOr("SPOE_METRICS_ADDR", ""), "serve /metrics and /debug/pprof on this address (off when empty)")
	lameDuck := flag.Duration("lame-duck", durationEnv("SPOE_LAME_DUCK", agent.DefaultLameDuck), "on SIGTERM, fail health checks for this long while serving, before draining (0: no lame-duck period)")
	shutdownTimeout := flag.Duration("shutdown-timeout", durationEnv("SPOE_SHUTDOWN_TIMEOUT", agent.DefaultShutdownTimeout), "bound on the drain that follows the lame-duck period")
	flag.Parse()
	if *lameDuck <= 0 {
		*lameDuck = agent.NoLameDuck
	}

	log, err := newLogger(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, "check-request")
	a := agent.New(
		agent.WithLogger(log),
		agent.WithErrorVar(agent.ScopeTransaction, "error"),
		agent.WithObserver(m),
		agent.WithLameDuck(*lameDuck),
		agent.WithShutdownTimeout(*shutdownTimeout),
	)
	m.ObserveAgent(a)
	a.Message("check-request", checkRequest)
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		srv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				log.Error("metrics server", zap.Error(err))
			}
		}()
		defer srv.Close()
		log.Info("metrics listening", zap.String("addr", *metricsAddr))
	}
	if err := a.Run(*addr); err != nil {
		log.Error("agent stopped", zap.Error(err))
		os.Exit(1)
	}
}

// checkRequest is the handler of the "check-request" message.
func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, _ := m.IP("client_ip")
	path, _ := m.Bytes("path")
	ua, _ := m.Bytes("user_agent")

	if strings.Contains(string(ua), "slow") {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	admin := strings.HasPrefix(string(path), "/admin")
	allowed := !admin || ip.IsLoopback()
	score := int64(len(path))
	if !allowed {
		score += 100
	}
	act.SetBool(agent.ScopeTransaction, "access_allowed", allowed)
	act.SetInt(agent.ScopeTransaction, "score", score)
	act.SetString(agent.ScopeTransaction, "test_arg", string(path))
	return nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// durationEnv returns the duration in environment variable k, or def when
// k is unset; a value that is not a duration stops the program.
func durationEnv(k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "example: %s=%q: %v\n", k, v, err)
		os.Exit(2)
	}
	return d
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
