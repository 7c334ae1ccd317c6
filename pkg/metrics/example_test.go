package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

// An agent whose activity is served on /metrics: after one NOTIFY, the
// scrape shows it.
func Example() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "check-request") // the message names handlers are registered for
	a := agent.New(agent.WithObserver(m))
	m.ObserveAgent(a)
	a.Message("check-request", func(ctx context.Context, msg *agent.Message, act *agent.Actions) error {
		return nil
	})
	mux := http.NewServeMux() // in production: http.ListenAndServe("127.0.0.1:9100", mux)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	web := httptest.NewServer(mux)
	defer web.Close()

	srv := spoetest.NewServer(a) // in production: a.Run("127.0.0.1:12345")
	defer srv.Close()
	c, err := srv.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.Notify(spoetest.NewMessage("check-request")); err != nil {
		fmt.Println(err)
		return
	}
	_ = c.Close()

	resp, err := http.Get(web.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `spoe_messages_total{message="check-request"}`) {
			fmt.Println(line)
		}
	}
	// Output:
	// spoe_messages_total{message="check-request"} 1
}
