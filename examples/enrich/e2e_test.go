package main

import (
	"net/http"
	"strconv"
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
// application gets X-Request-Id (the client's when valid, else a new one,
// which the client gets back) and the agent's X-Risk-Score, never the
// client's own.
func TestE2E(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		srv := spoetest.NewServer(newAgent(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))))
		t.Cleanup(func() { require.NoError(t, srv.Close()) })
		st := exampletest.Start(t, v, bin, srv.Addr)

		browser := []string{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			"Accept", "text/html", "Accept-Language", "en"}
		tests := []struct {
			name   string
			path   string
			header []string
			keepID string // "" means a new id
			risk   int
		}{
			{"browser", "/", browser, "", 0},
			{"browser with an id", "/", append([]string{"X-Request-Id", "req-42"}, browser...), "req-42", 0},
			{"invalid id replaced", "/", append([]string{"X-Request-Id", "<bad id>"}, browser...), "", 0},
			{"two ids replaced", "/", append([]string{"X-Request-Id", "a", "X-Request-Id", "b"}, browser...), "", 0},
			{"spoofed score", "/", append([]string{"X-Risk-Score", "0"}, "User-Agent", "curl/8.5.0"), "", riskToolUserAgent + riskNoAccept + riskNoLanguage},
			{"probe", "/wp-login.php", browser, "", riskProbe},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := st.MustGet(t, tt.path, tt.header...)
				require.Equal(t, http.StatusOK, r.Status, r.Body)
				require.NotNil(t, r.Echoed)
				ids := r.Echoed.Header.Values("X-Request-Id")
				require.Len(t, ids, 1)
				if tt.keepID != "" {
					require.Equal(t, tt.keepID, ids[0])
				} else {
					require.Regexp(t, hexID, ids[0])
				}
				require.Equal(t, ids[0], r.Header.Get("X-Request-Id"), "the client gets the id back")
				require.Equal(t, []string{strconv.Itoa(tt.risk)}, r.Echoed.Header.Values("X-Risk-Score"))
				require.Empty(t, r.Header.Get("X-Spoe-Error"))
				require.Empty(t, r.Header.Get("X-Agent-Error"))
			})
		}
	})
}
