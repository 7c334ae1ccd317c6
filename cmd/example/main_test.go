package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLoopbackByDefault(t *testing.T) {
	for in, want := range map[string]string{
		":12345":               "127.0.0.1:12345",
		"127.0.0.1:12345":      "127.0.0.1:12345",
		"0.0.0.0:12345":        "0.0.0.0:12345",
		"[::]:12345":           "[::]:12345",
		"agent.internal:12345": "agent.internal:12345",
		"unix:/run/spoa.sock":  "unix:/run/spoa.sock",
		"":                     "",
	} {
		require.Equal(t, want, loopbackByDefault(in), in)
	}
}

func TestParseFlags(t *testing.T) {
	t.Run("defaults: loopback, plain text, no metrics, no pprof", func(t *testing.T) {
		for _, k := range []string{"SPOE_AGENT_ADDR", "SPOE_METRICS_ADDR", "SPOE_PPROF_ADDR", "SPOE_TLS_CERT", "SPOE_TLS_KEY", "SPOE_TLS_CLIENT_CA", "SPOE_TLS_RELOAD", "SPOE_ALLOW", "SPOE_SOCKET_MODE"} {
			t.Setenv(k, "")
		}
		f, err := parseFlags(nil)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:12345", f.addr)
		require.Empty(t, f.metricsAddr)
		require.Empty(t, f.pprofAddr)
		require.Empty(t, f.tlsCert)
		require.Equal(t, 10*time.Second, f.tlsReload)
	})
	t.Run("environment, and flags over it", func(t *testing.T) {
		t.Setenv("SPOE_AGENT_ADDR", "0.0.0.0:1")
		t.Setenv("SPOE_METRICS_ADDR", ":9100")
		t.Setenv("SPOE_PPROF_ADDR", ":6060")
		t.Setenv("SPOE_TLS_CERT", "a.crt")
		t.Setenv("SPOE_TLS_KEY", "a.key")
		t.Setenv("SPOE_TLS_CLIENT_CA", "ca.crt")
		t.Setenv("SPOE_TLS_RELOAD", "1m")
		f, err := parseFlags([]string{"-addr", ":2", "-tls-reload", "0"})
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:2", f.addr)
		require.Equal(t, "127.0.0.1:9100", f.metricsAddr)
		require.Equal(t, "127.0.0.1:6060", f.pprofAddr)
		require.Equal(t, "a.crt", f.tlsCert)
		require.Equal(t, "ca.crt", f.tlsCA)
		require.Zero(t, f.tlsReload)
	})
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-tls-cert", "a.crt"}, "-tls-cert and -tls-key go together"},
		{[]string{"-tls-key", "a.key"}, "-tls-cert and -tls-key go together"},
		{[]string{"-tls-client-ca", "ca.crt"}, "-tls-client-ca needs -tls-cert"},
		{[]string{"-tls-reload", "often"}, "want a duration"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			t.Setenv("SPOE_TLS_CERT", "")
			t.Setenv("SPOE_TLS_KEY", "")
			t.Setenv("SPOE_TLS_CLIENT_CA", "")
			_, err := parseFlags(tc.args)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestParseAllow(t *testing.T) {
	got, err := parseAllow("10.0.0.0/8, 192.0.2.7,2001:db8::/32 ::1")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::1/128"),
	}, got)
	_, err = parseAllow("10.0.0.0/8,bogus")
	require.ErrorContains(t, err, `"bogus" is neither a network`)
	_, err = parseAllow(" , ")
	require.ErrorContains(t, err, "names no network")
}

// TestWarnExposure: what listens beyond loopback without protection is
// said, and only that.
func TestWarnExposure(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    flags
		want []string
	}{
		{"loopback", flags{addr: "127.0.0.1:1", metricsAddr: "127.0.0.1:2", pprofAddr: "[::1]:3"}, nil},
		{"unix socket", flags{addr: "unix:/run/a.sock"}, nil},
		{"plain text on every interface", flags{addr: "0.0.0.0:1"}, []string{"the agent listens beyond loopback in plain text"}},
		{"allowlist", flags{addr: "0.0.0.0:1", allow: "10.0.0.0/8"}, nil},
		{"TLS without client certificates", flags{addr: "0.0.0.0:1", tlsCert: "a"}, []string{"TLS without client certificates"}},
		{"mutual TLS", flags{addr: "0.0.0.0:1", tlsCert: "a", tlsCA: "c"}, nil},
		{"metrics and pprof exposed", flags{addr: "127.0.0.1:1", metricsAddr: "0.0.0.0:2", pprofAddr: "10.0.0.1:3"},
			[]string{"metrics listens beyond loopback", "pprof listens beyond loopback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			warnExposure(zap.New(core), &tc.f)
			var got []string
			for _, e := range logs.All() {
				got = append(got, e.Message)
			}
			require.Len(t, got, len(tc.want), "%q", got)
			for i, w := range tc.want {
				require.Contains(t, got[i], w)
			}
		})
	}
}
