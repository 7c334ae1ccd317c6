package main

import (
	"strings"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// browser returns the arguments HAProxy sends for an ordinary browser
// request of path, with the given request id, then extra.
func browser(path, id string, extra ...agent.Arg) []agent.Arg {
	idArg := spoetest.Null("id")
	count := int64(0)
	if id != "" {
		idArg, count = spoetest.Str("id", id), 1
	}
	return append([]agent.Arg{
		idArg, spoetest.Int("id_count", count), spoetest.Str("method", "GET"), spoetest.Str("path", path),
		spoetest.Str("ua", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
		spoetest.Str("accept", "text/html"), spoetest.Str("lang", "en-GB,en;q=0.5"),
	}, extra...)
}

// with replaces the arguments of args named like those in repl.
func with(args []agent.Arg, repl ...agent.Arg) []agent.Arg {
	out := append([]agent.Arg(nil), args...)
	for _, r := range repl {
		for i := range out {
			if string(out[i].Name) == string(r.Name) {
				out[i] = r
			}
		}
	}
	return out
}

// hexID matches the request ids the agent makes.
var hexID = `^[0-9a-f]{32}$`

func TestEnricher(t *testing.T) {
	tests := []struct {
		name  string
		args  []agent.Arg
		newID bool
		risk  int64
	}{
		{"browser with an id", browser("/", "req-1"), false, 0},
		{"browser without an id", browser("/", ""), true, 0},
		{"uuid id", browser("/", "123e4567-e89b-12d3-a456-426614174000"), false, 0},
		{"empty id", with(browser("/", "x"), spoetest.Str("id", "")), true, 0},
		{"id with a space", browser("/", "a b"), true, 0},
		{"id with markup", browser("/", "<script>"), true, 0},
		{"id too long", browser("/", strings.Repeat("a", maxIDLen+1)), true, 0},
		{"id of the longest length", browser("/", strings.Repeat("a", maxIDLen)), false, 0},
		{"two ids", with(browser("/", "req-1"), spoetest.Int("id_count", 2)), true, 0},
		{"no User-Agent", with(browser("/", "r"), spoetest.Null("ua")), false, riskNoUserAgent},
		{"curl", with(browser("/", "r"), spoetest.Str("ua", "curl/8.5.0")), false, riskToolUserAgent},
		{"sqlmap, any case", with(browser("/", "r"), spoetest.Str("ua", "SQLMap/1.8")), false, riskToolUserAgent},
		{"no Accept", with(browser("/", "r"), spoetest.Null("accept")), false, riskNoAccept},
		{"empty Accept-Language", with(browser("/", "r"), spoetest.Str("lang", "")), false, riskNoLanguage},
		{"odd method", with(browser("/", "r"), spoetest.Str("method", "PROPFIND")), false, riskOddMethod},
		{"traversal", browser("/static/../../etc/passwd", "r"), false, riskTraversal},
		{"encoded traversal", browser("/static/%2E%2E%2Fetc/passwd", "r"), false, riskTraversal},
		{"probe", browser("/WP-LOGIN.php", "r"), false, riskProbe},
		{"dot env", browser("/.env", "r"), false, riskProbe},
		{"long path", browser("/"+strings.Repeat("a", 1024), "r"), false, riskLongPath},
		{"capped at 100", []agent.Arg{spoetest.Null("id"), spoetest.Str("method", "TRACE"), spoetest.Str("path", "/.git/../../x")}, true, maxRisk},
		{"no arguments at all", nil, true, riskNoUserAgent + riskNoAccept + riskNoLanguage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := spoetest.Run(t, enricher{}.HandleMessage, spoetest.NewMessage("enrich", tt.args...))
			require.Equal(t, 0, res.Code())
			risk, ok := res.Int(agent.ScopeTransaction, varRisk)
			require.True(t, ok)
			require.Equal(t, tt.risk, risk)
			id, ok := res.String(agent.ScopeTransaction, varRequestID)
			require.Equal(t, tt.newID, ok, "a new request id: %q", id)
			if tt.newID {
				require.Regexp(t, hexID, id)
			}
		})
	}
}

func TestEnricher_IDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		res := spoetest.Run(t, enricher{}.HandleMessage, spoetest.NewMessage("enrich"))
		id, _ := res.String(agent.ScopeTransaction, varRequestID)
		require.False(t, seen[id], "id %s twice", id)
		seen[id] = true
	}
}

// TestAgent: the agent, served in process, answers many NOTIFYs at once.
func TestAgent(t *testing.T) {
	srv := spoetest.NewServer(newAgent(zap.NewNop()))
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	c := spoetest.MustDial(t, srv.Addr, spoetest.WithStyle(spoetest.HAProxy26))
	msgs := make([]spoetest.Message, 50)
	for i := range msgs {
		msgs[i] = spoetest.NewMessage("enrich", browser("/", "")...)
	}
	for _, ack := range c.Pipeline(msgs...) {
		risk, _ := ack.Int(agent.ScopeTransaction, varRisk)
		require.Zero(t, risk)
		id, _ := ack.String(agent.ScopeTransaction, varRequestID)
		require.Regexp(t, hexID, id)
	}
}

func BenchmarkEnricher(b *testing.B) {
	msg := spoetest.NewMessage("enrich", with(browser("/index.html", "req-1"), spoetest.Str("ua", "curl/8.5.0"))...)
	b.ReportAllocs()
	for b.Loop() {
		spoetest.Run(b, enricher{}.HandleMessage, msg)
	}
}
