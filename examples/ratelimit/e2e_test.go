package main

import (
	"net/http"
	"testing"

	"github.com/spoe-forge/spoe-forge/examples/internal/exampletest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestConfigs(t *testing.T) { exampletest.CheckConfigs(t) }

// TestE2E: through a real HAProxy on this example's configuration, a
// client gets its burst, then 429 with Retry-After; every answer says what
// is left. With the agent down nothing is limited (fail open), and the
// response says why.
func TestE2E(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		// One token per 100 s: nothing refills during the test.
		a, _, err := newAgent(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			config{Rate: 0.01, Burst: 3, MaxClients: 100, IPv6Prefix: 64})
		require.NoError(t, err)
		srv := spoetest.NewServer(a)
		t.Cleanup(func() { require.NoError(t, srv.Close()) })
		st := exampletest.Start(t, v, bin, srv.Addr)

		for i, want := range []struct {
			status     int
			remaining  string
			retryAfter string
		}{
			{http.StatusOK, "2", ""},
			{http.StatusOK, "1", ""},
			{http.StatusOK, "0", ""},
			{http.StatusTooManyRequests, "0", "100"},
			{http.StatusTooManyRequests, "0", "100"},
		} {
			r := st.MustGet(t, "/")
			require.Equal(t, want.status, r.Status, "request %d: %s", i, r.Body)
			require.Equal(t, want.remaining, r.Header.Get("X-RateLimit-Remaining"), "request %d", i)
			require.Equal(t, want.retryAfter, r.Header.Get("Retry-After"), "request %d", i)
			require.Empty(t, r.Header.Get("X-Spoe-Error"))
			require.Empty(t, r.Header.Get("X-Agent-Error"))
		}

		t.Run("agent down: fail open", func(t *testing.T) {
			require.NoError(t, srv.Close())
			r := st.MustGet(t, "/")
			require.Equal(t, http.StatusOK, r.Status)
			require.NotEmpty(t, r.Header.Get("X-Spoe-Error"))
			require.Empty(t, r.Header.Get("X-RateLimit-Remaining"))
		})
	})
}
