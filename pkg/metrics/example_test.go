package metrics_test

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
)

// An agent whose activity is served on /metrics.
func Example() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "check-request") // the message names handlers are registered for
	a := agent.New(agent.WithObserver(m))
	m.ObserveAgent(a)
	a.Message("check-request", func(ctx context.Context, msg *agent.Message, act *agent.Actions) error {
		return nil
	})
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// go http.ListenAndServe("127.0.0.1:9100", nil)
	// a.Run("127.0.0.1:12345")
	// Output:
}
