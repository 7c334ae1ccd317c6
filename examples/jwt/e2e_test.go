package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spoe-forge/spoe-forge/examples/internal/exampletest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestConfigs(t *testing.T) { exampletest.CheckConfigs(t) }

// TestE2E: through a real HAProxy on this example's configuration, which
// sends the request's headers as req.hdrs_bin, a valid token reaches the
// application with its subject in X-Jwt-Sub (a client's own X-Jwt-Sub never
// does), an invalid or missing one, or two Authorization headers, get 401
// with the reason, and with the agent down HAProxy fails closed with 503.
func TestE2E(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		a, err := newAgent(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), config{Secret: testSecret, Leeway: time.Second})
		require.NoError(t, err)
		srv := spoetest.NewServer(a)
		t.Cleanup(func() { require.NoError(t, srv.Close()) })
		st := exampletest.Start(t, v, bin, srv.Addr)

		now := time.Now()
		good := sign(t, jwt.SigningMethodHS256, testSecret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))})
		expired := sign(t, jwt.SigningMethodHS256, testSecret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(-time.Hour))})
		tests := []struct {
			name       string
			header     []string
			wantStatus int
			wantBody   string // for HAProxy's own answers
			wantSub    string // X-Jwt-Sub as the application saw it
		}{
			{"valid", []string{"Authorization", "Bearer " + good}, http.StatusOK, "", "alice"},
			{"valid, spoofed subject", []string{"Authorization", "Bearer " + good, "X-Jwt-Sub", "mallory"}, http.StatusOK, "", "alice"},
			{"missing", nil, http.StatusUnauthorized, reasonMissing, ""},
			{"missing, spoofed subject", []string{"X-Jwt-Sub", "mallory"}, http.StatusUnauthorized, reasonMissing, ""},
			{"expired", []string{"Authorization", "Bearer " + expired}, http.StatusUnauthorized, reasonExpired, ""},
			{"basic", []string{"Authorization", "Basic YWxpY2U6c2VjcmV0"}, http.StatusUnauthorized, reasonNotBearer, ""},
			{"garbage", []string{"Authorization", "Bearer a,b"}, http.StatusUnauthorized, reasonMalformed, ""},
			{"two Authorization headers", []string{"Authorization", "Bearer " + good, "Authorization", "Bearer " + expired}, http.StatusUnauthorized, reasonSeveral, ""},
			{"among many headers", []string{"Accept", "*/*", "X-Forwarded-For", "192.0.2.1", "authorization", "Bearer " + good, "Cookie", "a=1"}, http.StatusOK, "", "alice"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := st.MustGet(t, "/api", tt.header...)
				require.Equal(t, tt.wantStatus, r.Status, "body: %s", r.Body)
				if tt.wantStatus != http.StatusOK {
					require.Equal(t, tt.wantBody, r.Body)
					require.Equal(t, `Bearer error="invalid_token"`, r.Header.Get("WWW-Authenticate"))
					return
				}
				require.NotNil(t, r.Echoed)
				require.Equal(t, []string{tt.wantSub}, r.Echoed.Header.Values("X-Jwt-Sub"))
			})
		}

		t.Run("agent down: 503", func(t *testing.T) {
			require.NoError(t, srv.Close())
			r := st.MustGet(t, "/api", "Authorization", "Bearer "+good)
			require.Equal(t, http.StatusServiceUnavailable, r.Status, "body: %s", r.Body)
			// HAProxy's own error variable says why; the agent's is unset.
			require.Regexp(t, `^authentication unavailable \(spoe_error \d+, agent_error \)$`, r.Body)
		})
	})
}
