package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestE2E_HandlerCallsHTTPWithDerivedContext: handlers written as Go code
// calls a backend service: a context derived with WithTimeout, passed to
// net/http (which watches it from goroutines of its own), an errgroup of
// two calls, and a goroutine that uses the context after the handler
// returned. Through real HAProxy, under concurrent requests: no crash,
// every request gets its variables, or the agent's error variable at 1003 (agent.ErrCodeTimeout) when the service is slower
// than the handler's deadline, and every stale context reports its end.
func TestE2E_HandlerCallsHTTPWithDerivedContext(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/slow") {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done(): // the agent's handler gave up
					return
				}
			}
			fmt.Fprint(w, len(r.URL.Path))
		}))
		defer svc.Close()
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		defer hc.CloseIdleConnections()
		get := func(ctx context.Context, path string) (string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL+path, nil)
			if err != nil {
				return "", err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		}
		var stale sync.WaitGroup
		var staleBad atomic.Int64
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-ctx", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				path, _ := m.String("path")
				defer func() {
					stale.Add(1)
					go func() { // outlives the handler
						defer stale.Done()
						time.Sleep(10 * time.Millisecond)
						if ctx.Err() == nil {
							staleBad.Add(1)
						}
						select {
						case <-ctx.Done():
						default:
							staleBad.Add(1)
						}
					}()
				}()
				c2, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
				defer cancel()
				g, gctx := errgroup.WithContext(c2)
				var a, b string
				g.Go(func() (err error) { a, err = get(gctx, path); return })
				g.Go(func() (err error) { b, err = get(gctx, path+"/again"); return })
				if err := g.Wait(); err != nil {
					return err
				}
				act.SetString(agent.ScopeTransaction, "a", a)
				act.SetString(agent.ScopeTransaction, "b", b)
				return nil
			})
		}, agent.WithTimeout(300*time.Millisecond), agent.WithErrorVar(agent.ScopeTransaction, "agent_error"))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-ctx",
			SPOE: `
spoe-message e2e-ctx
    args path=path
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "a=%[var(txn.e2e.a,ABSENT)]\nb=%[var(txn.e2e.b,ABSENT)]\nagent_error=%[var(txn.e2e.agent_error,ABSENT)]\nspoe_error=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 8)
		const n = 200
		var g errgroup.Group
		g.SetLimit(8)
		var fast, slow atomic.Int64
		for i := range n {
			g.Go(func() error {
				path := fmt.Sprintf("/fast/%d", i)
				if i%10 == 0 {
					path = fmt.Sprintf("/slow/%d", i)
				}
				r, err := do(cl, "GET", c.URL(path), nil, nil)
				if err != nil {
					return err
				}
				vars := r.Vars()
				if r.Status != 200 || vars["spoe_error"] != "ABSENT" {
					return fmt.Errorf("%s: status %d, %q", path, r.Status, r.Body)
				}
				if strings.HasPrefix(path, "/slow") {
					if vars["agent_error"] != fmt.Sprint(agent.ErrCodeTimeout) || vars["a"] != "ABSENT" {
						return fmt.Errorf("%s: want agent_error %d and no variables, got %q", path, agent.ErrCodeTimeout, r.Body)
					}
					slow.Add(1)
					return nil
				}
				if vars["a"] != fmt.Sprint(len(path)) || vars["b"] != fmt.Sprint(len(path+"/again")) || vars["agent_error"] != "ABSENT" {
					return fmt.Errorf("%s: got %q", path, r.Body)
				}
				fast.Add(1)
				return nil
			})
		}
		require.NoError(t, g.Wait())
		stale.Wait()
		assert.Equal(t, int64(n-n/10), fast.Load())
		assert.Equal(t, int64(n/10), slow.Load())
		assert.Zero(t, staleBad.Load(), "a context used after its handler returned had not ended")
	})
}
