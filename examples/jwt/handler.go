package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

// The variables the handler sets, in the transaction scope (HAProxy adds
// the var-prefix: txn.auth.jwt_valid with spoe.conf).
const (
	varValid = "jwt_valid" // bool: the request carries a valid token
	varSub   = "jwt_sub"   // string: the token's subject, when valid and present
	varError = "jwt_error" // string: why the token is not valid
)

// The reasons set in jwt_error. They are fixed strings, never parts of the
// token, so HAProxy can put them in a response.
const (
	reasonMissing     = "missing token"
	reasonSeveral     = "several authorization headers"
	reasonNotBearer   = "not a bearer token"
	reasonTooLong     = "token too long"
	reasonMalformed   = "malformed token"
	reasonAlgorithm   = "unexpected signing method"
	reasonSignature   = "invalid signature"
	reasonExpired     = "token expired"
	reasonNotYetValid = "token not valid yet"
	reasonNoExpiry    = "token has no expiry"
	reasonIssuer      = "invalid issuer"
	reasonAudience    = "invalid audience"
	reasonSubject     = "invalid subject"
	reasonInvalid     = "invalid token"
)

// maxTokenLen bounds the tokens the handler parses.
const maxTokenLen = 8 << 10

// minSecretLen is the shortest HS256 secret accepted: RFC 7518 §3.2 wants a
// key at least as long as the hash.
const minSecretLen = 32

// config configures a verifier.
type config struct {
	// Secret is the HS256 key, at least 32 bytes.
	Secret []byte
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer, Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// verifier is the handler of the check-token message: it checks the bearer
// token of the Authorization header, read from the "headers" argument (the
// request's req.hdrs_bin block), and sets jwt_valid, and jwt_sub or
// jwt_error.
type verifier struct {
	parser *jwt.Parser
	key    jwt.Keyfunc
}

// newVerifier returns the handler for c.
func newVerifier(c config) (*verifier, error) {
	if len(c.Secret) < minSecretLen {
		return nil, fmt.Errorf("the HS256 secret has %d bytes; it needs at least %d", len(c.Secret), minSecretLen)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.Leeway),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	if c.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(c.Now))
	}
	secret := append([]byte(nil), c.Secret...)
	return &verifier{
		parser: jwt.NewParser(opts...),
		key:    func(*jwt.Token) (any, error) { return secret, nil },
	}, nil
}

// errNoHeaders is the handler's error when the message has no header
// block: HAProxy's configuration does not send "headers=req.hdrs_bin", or
// could not fetch the headers.
var errNoHeaders = errors.New(`the message has no "headers" argument (args headers=req.hdrs_bin)`)

// HandleMessage implements agent.Handler. An invalid token is an answer,
// not a failure: it returns nil. A missing or malformed header block is a
// failure: it sets no variable (HAProxy's configuration then answers 503)
// and returns the error.
func (v *verifier) HandleMessage(_ context.Context, m *agent.Message, act *agent.Actions) error {
	h, ok := m.Headers("headers")
	if !ok {
		return errNoHeaders
	}
	auth, n, err := authorization(h)
	if err != nil {
		return fmt.Errorf("reading the request's headers: %w", err)
	}
	var sub, reason string
	if n > 1 {
		// HAProxy and the application could each read another one.
		reason = reasonSeveral
	} else {
		sub, reason = v.check(auth)
	}
	act.SetBool(agent.ScopeTransaction, varValid, reason == "")
	switch {
	case reason != "":
		act.SetString(agent.ScopeTransaction, varError, reason)
	case sub != "":
		act.SetString(agent.ScopeTransaction, varSub, sub)
	}
	return nil
}

// authorization returns the value of the request's Authorization header
// (nil when there is none) and the number of such headers, reading the
// block in place.
func authorization(h agent.Headers) (auth []byte, n int, err error) {
	it := h.Iter()
	for it.Next() {
		if it.NameIs("authorization") {
			if n == 0 {
				auth = it.Value()
			}
			n++
		}
	}
	return auth, n, it.Err()
}

// check returns the subject of the token in auth, an Authorization header,
// or why the token is not valid.
func (v *verifier) check(auth []byte) (sub, reason string) {
	if len(auth) == 0 {
		return "", reasonMissing
	}
	token, ok := bearer(auth)
	switch {
	case !ok:
		return "", reasonNotBearer
	case len(token) > maxTokenLen:
		return "", reasonTooLong
	}
	var claims jwt.RegisteredClaims
	tok, err := v.parser.ParseWithClaims(string(token), &claims, v.key)
	if err != nil {
		return "", reasonOf(tok, err)
	}
	if !printable(claims.Subject) {
		return "", reasonSubject
	}
	return claims.Subject, ""
}

// bearerScheme is the authentication scheme of bearer tokens.
var bearerScheme = []byte("Bearer")

// bearer returns the token of an Authorization value "Bearer <token>"
// (RFC 6750 §2.1; the scheme is case-insensitive).
func bearer(auth []byte) ([]byte, bool) {
	n := len(bearerScheme)
	if len(auth) < n+2 || !bytes.EqualFold(auth[:n], bearerScheme) || auth[n] != ' ' {
		return nil, false
	}
	tok := bytes.Trim(auth[n+1:], " ")
	return tok, len(tok) > 0
}

// reasonOf maps a parsing error to its reason.
func reasonOf(tok *jwt.Token, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonMalformed
	case tok != nil && tok.Method != nil && tok.Method.Alg() != jwt.SigningMethodHS256.Alg(),
		errors.Is(err, jwt.ErrTokenUnverifiable):
		return reasonAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reasonSignature
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return reasonNoExpiry
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonAudience
	}
	return reasonInvalid
}

// printable reports whether s is safe in an HTTP header: printable ASCII
// and at most 255 bytes.
func printable(s string) bool {
	if len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
