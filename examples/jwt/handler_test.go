package main

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

// sign returns a token for claims, signed with method and key.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

// claims returns registered claims valid at testNow for subject sub.
func claims(sub string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    "https://issuer.example",
		Audience:  jwt.ClaimStrings{"api"},
		IssuedAt:  jwt.NewNumericDate(testNow.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour)),
	}
}

// authArg returns the header block of a request with an Authorization
// header of value auth, as req.hdrs_bin sends it.
func authArg(auth string) agent.Arg {
	return spoetest.Headers("headers", "host", "api.example", "authorization", auth, "accept", "*/*")
}

func bearerArg(tok string) agent.Arg { return authArg("Bearer " + tok) }

func TestVerifier(t *testing.T) {
	v, err := newVerifier(config{Secret: testSecret, Issuer: "https://issuer.example", Audience: "api", Leeway: 30 * time.Second,
		Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	valid := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice"))
	with := func(edit func(c *jwt.RegisteredClaims)) string {
		c := claims("alice")
		edit(&c)
		return sign(t, jwt.SigningMethodHS256, testSecret, c)
	}
	invalid := func(reason string) map[string]any {
		return map[string]any{"txn.jwt_valid": false, "txn.jwt_error": reason}
	}
	tests := []struct {
		name string
		args []agent.Arg
		want map[string]any
	}{
		{"valid", []agent.Arg{bearerArg(valid)}, map[string]any{"txn.jwt_valid": true, "txn.jwt_sub": "alice"}},
		{"valid, no subject", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.Subject = "" }))}, map[string]any{"txn.jwt_valid": true}},
		{"scheme in lower case, extra spaces", []agent.Arg{authArg("bearer   " + valid + " ")}, map[string]any{"txn.jwt_valid": true, "txn.jwt_sub": "alice"}},
		{"within the leeway", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(testNow.Add(-20 * time.Second)) }))},
			map[string]any{"txn.jwt_valid": true, "txn.jwt_sub": "alice"}},
		{"no Authorization header", []agent.Arg{spoetest.Headers("headers", "host", "api.example")}, invalid(reasonMissing)},
		{"no header at all", []agent.Arg{spoetest.Headers("headers")}, invalid(reasonMissing)},
		{"header name in upper case", []agent.Arg{spoetest.Headers("headers", "AUTHORIZATION", "Bearer "+valid)}, map[string]any{"txn.jwt_valid": true, "txn.jwt_sub": "alice"}},
		{"two Authorization headers", []agent.Arg{spoetest.Headers("headers", "authorization", "Bearer "+valid, "authorization", "Bearer "+valid)}, invalid(reasonSeveral)},
		{"an empty and a valid Authorization header", []agent.Arg{spoetest.Headers("headers", "authorization", "", "authorization", "Bearer "+valid)}, invalid(reasonSeveral)},
		{"empty header", []agent.Arg{authArg("")}, invalid(reasonMissing)},
		{"basic auth", []agent.Arg{authArg("Basic YWxpY2U6c2VjcmV0")}, invalid(reasonNotBearer)},
		{"scheme only", []agent.Arg{authArg("Bearer ")}, invalid(reasonNotBearer)},
		{"NUL after the scheme", []agent.Arg{authArg("Bearer\x00" + valid)}, invalid(reasonNotBearer)},
		{"too long", []agent.Arg{bearerArg(strings.Repeat("a", maxTokenLen+1))}, invalid(reasonTooLong)},
		{"malformed", []agent.Arg{bearerArg("not.a.jwt")}, invalid(reasonMalformed)},
		{"two parts", []agent.Arg{bearerArg("abc.def")}, invalid(reasonMalformed)},
		{"wrong secret", []agent.Arg{bearerArg(sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes"), claims("alice")))}, invalid(reasonSignature)},
		{"payload swapped", []agent.Arg{bearerArg(swapPayload(valid, sign(t, jwt.SigningMethodHS256, []byte("the attacker's own secret, 32 b."), claims("admin"))))}, invalid(reasonSignature)},
		{"HS512", []agent.Arg{bearerArg(sign(t, jwt.SigningMethodHS512, testSecret, claims("alice")))}, invalid(reasonAlgorithm)},
		{"alg none", []agent.Arg{bearerArg(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice")))}, invalid(reasonAlgorithm)},
		{"expired", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(testNow.Add(-time.Minute)) }))}, invalid(reasonExpired)},
		{"no expiry", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }))}, invalid(reasonNoExpiry)},
		{"not before, in the future", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(testNow.Add(time.Minute)) }))}, invalid(reasonNotYetValid)},
		{"issued in the future", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(testNow.Add(time.Minute)) }))}, invalid(reasonNotYetValid)},
		{"other issuer", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example" }))}, invalid(reasonIssuer)},
		{"other audience", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"web"} }))}, invalid(reasonAudience)},
		{"subject with CR LF", []agent.Arg{bearerArg(with(func(c *jwt.RegisteredClaims) { c.Subject = "alice\r\nX-Admin: 1" }))}, invalid(reasonSubject)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := spoetest.Run(t, v.HandleMessage, spoetest.NewMessage("check-token", tt.args...))
			require.Equal(t, 0, res.Code(), "an invalid token is an answer, not an error")
			require.Equal(t, tt.want, res.Map())
		})
	}
}

// TestVerifier_NoHeaders: without a well-formed header block the handler
// fails, sets nothing, and HAProxy's configuration answers 503.
func TestVerifier_NoHeaders(t *testing.T) {
	v, err := newVerifier(config{Secret: testSecret})
	require.NoError(t, err)
	tests := []struct {
		name string
		args []agent.Arg
		want string
	}{
		{"no argument", nil, `no "headers" argument`},
		{"NULL: HAProxy could not fetch the headers", []agent.Arg{spoetest.Null("headers")}, `no "headers" argument`},
		{"an integer", []agent.Arg{spoetest.Int("headers", 1)}, `no "headers" argument`},
		{"the old auth argument", []agent.Arg{spoetest.Str("auth", "Bearer x")}, `no "headers" argument`},
		{"malformed block", []agent.Arg{spoetest.Bin("headers", []byte{13, 'a', 'u', 't', 'h'})}, "reading the request's headers: spop: malformed header block at byte 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := spoetest.Run(t, v.HandleMessage, spoetest.NewMessage("check-token", tt.args...))
			require.Equal(t, agent.ErrCodeHandler, res.Code())
			require.ErrorContains(t, res.Err, tt.want)
			require.Empty(t, res.Map(), "no variable: HAProxy fails closed")
		})
	}
}

// swapPayload returns tok with the payload of other: a valid signature
// over another subject.
func swapPayload(tok, other string) string {
	p, o := strings.Split(tok, "."), strings.Split(other, ".")
	return p[0] + "." + o[1] + "." + p[2]
}

func TestNewVerifier_ShortSecret(t *testing.T) {
	_, err := newVerifier(config{Secret: []byte("short")})
	require.ErrorContains(t, err, "at least 32")
}

func TestLoadSecret(t *testing.T) {
	file := t.TempDir() + "/secret"
	require.NoError(t, writeFile(file, "s3cret\n"))
	tests := []struct {
		name, file, env, want, wantErr string
	}{
		{"env", "", "from-env", "from-env", ""},
		{"file wins, newline trimmed", file, "from-env", "s3cret", ""},
		{"none", "", "", "", "no secret"},
		{"missing file", file + ".nope", "", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadSecret(tt.file, tt.env)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

// TestAgent: the agent main builds, served in process, answers as the
// handler does, and a real HAProxy HELLO-style health check passes.
func TestAgent(t *testing.T) {
	a, err := newAgent(zap.NewNop(), config{Secret: testSecret})
	require.NoError(t, err)
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	_, err = spoetest.Healthcheck(srv.Addr)
	require.NoError(t, err)

	tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.RegisteredClaims{
		Subject: "bob", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	for _, style := range []spoetest.Style{spoetest.HAProxy26, spoetest.HAProxy32} {
		t.Run(style.String(), func(t *testing.T) {
			c := spoetest.MustDial(t, srv.Addr, spoetest.WithStyle(style))
			acks := c.Pipeline(
				spoetest.NewMessage("check-token", bearerArg(tok)),
				spoetest.NewMessage("check-token", spoetest.Headers("headers", "host", "api.example")),
			)
			require.Equal(t, map[string]any{"txn.jwt_valid": true, "txn.jwt_sub": "bob"}, acks[0].Map())
			require.Equal(t, map[string]any{"txn.jwt_valid": false, "txn.jwt_error": reasonMissing}, acks[1].Map())
		})
	}
}

func BenchmarkVerifier(b *testing.B) {
	v, err := newVerifier(config{Secret: testSecret})
	require.NoError(b, err)
	tok := sign(b, jwt.SigningMethodHS256, testSecret, jwt.RegisteredClaims{
		Subject: "bob", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	msg := spoetest.NewMessage("check-token", bearerArg(tok))
	b.ReportAllocs()
	for b.Loop() {
		if res := spoetest.Run(b, v.HandleMessage, msg); res.Code() != 0 {
			b.Fatal(res.Code())
		}
	}
}
