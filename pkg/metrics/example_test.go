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
// scrape shows it. The registry and the mux are the program's own, not
// prometheus.DefaultRegisterer and http.DefaultServeMux: nothing is
// registered twice when a second agent, or a second run of this example
// (go test -count=2), does the same.
func Example() {
	m := metrics.New()
	a := agent.New(agent.WithObserver(m))
	a.Message("check-request", func(ctx context.Context, msg *agent.Message, act *agent.Actions) error {
		return nil
	})
	m.ObserveAgent(a) // after the handlers: their names label the per-message series
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
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
