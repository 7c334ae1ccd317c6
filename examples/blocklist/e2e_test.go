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

// TestE2E: through a real HAProxy on this example's configuration, the
// test's client (127.0.0.1) passes until the list blocks it, then gets 403;
// with the agent down the request passes (fail open) and says why.
func TestE2E(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		l, err := parse("192.0.2.0/24 2001:db8::/32")
		require.NoError(t, err)
		c := newChecker(l)
		srv := spoetest.NewServer(newAgent(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), c))
		t.Cleanup(func() { require.NoError(t, srv.Close()) })
		st := exampletest.Start(t, v, bin, srv.Addr)

		for _, tt := range []struct {
			list string
			want int
		}{
			{"192.0.2.0/24 2001:db8::/32", http.StatusOK},
			{"127.0.0.0/8", http.StatusForbidden},
			{"::1 10.0.0.0/8", http.StatusOK},
			{"127.0.0.1", http.StatusForbidden},
			{"::ffff:127.0.0.0/104", http.StatusForbidden},
		} {
			l, err := parse(tt.list)
			require.NoError(t, err)
			c.Store(l)
			r := st.MustGet(t, "/")
			require.Equal(t, tt.want, r.Status, "list %q: %s", tt.list, r.Body)
			require.Empty(t, r.Header.Get("X-Spoe-Error"))
			require.Empty(t, r.Header.Get("X-Agent-Error"))
		}

		t.Run("agent down: fail open", func(t *testing.T) {
			require.NoError(t, srv.Close())
			r := st.MustGet(t, "/")
			require.Equal(t, http.StatusOK, r.Status)
			require.NotEmpty(t, r.Header.Get("X-Spoe-Error"))
		})
	})
}
