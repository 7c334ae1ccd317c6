package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

// The variables the handler sets, in the transaction scope (HAProxy adds
// the var-prefix: txn.enrich.request_id with spoe.conf).
const (
	varRequestID = "request_id" // string: a new request id, when the request has no valid one
	varRisk      = "risk_score" // int: 0 (nothing odd) to 100
)

// maxIDLen bounds the request ids kept from clients.
const maxIDLen = 128

// The weights of the risk features. The score is their sum, capped at 100.
const (
	riskNoUserAgent   = 30 // no User-Agent header
	riskToolUserAgent = 20 // a command-line tool, a library or a scanner
	riskNoAccept      = 10 // no Accept header
	riskNoLanguage    = 10 // no Accept-Language header
	riskOddMethod     = 20 // not one of the usual methods
	riskTraversal     = 40 // "../" in the path, plain or percent-encoded
	riskProbe         = 30 // a path scanners probe for
	riskLongPath      = 10 // a path over 1 KiB
	maxRisk           = 100
)

// toolAgents are User-Agent fragments of tools rather than browsers,
// compared without case.
var toolAgents = []string{
	"curl", "wget", "python-requests", "python-urllib", "go-http-client", "libwww-perl",
	"java/", "okhttp", "scrapy", "nikto", "sqlmap", "masscan", "zgrab", "nmap",
}

// probedPaths are path prefixes scanners look for, compared without case.
var probedPaths = []string{
	"/.env", "/.git", "/wp-admin", "/wp-login.php", "/xmlrpc.php", "/phpmyadmin",
	"/cgi-bin/", "/vendor/phpunit", "/actuator", "/server-status",
}

// traversals are the spellings of "../" in a raw path, compared without case.
var traversals = []string{"../", "..%2f", "%2e%2e/", "%2e%2e%2f", "..\\", "..%5c"}

// enricher is the handler of the enrich message: it gives requests
// without a valid X-Request-Id a new one, and scores how odd each request
// looks from a few features of its headers.
type enricher struct{}

// HandleMessage implements agent.Handler.
func (enricher) HandleMessage(_ context.Context, m *agent.Message, act *agent.Actions) error {
	id, ok := m.Bytes("id") // NULL, so not ok, when the header is missing
	if n, counted := m.Int("id_count"); counted && n != 1 {
		ok = false // several X-Request-Id headers: replace them all
	}
	if !ok || !validID(id) {
		var raw [16]byte
		_, _ = rand.Read(raw[:]) // never fails (crypto/rand)
		var buf [32]byte
		hex.Encode(buf[:], raw[:])
		act.SetString(agent.ScopeTransaction, varRequestID, string(buf[:]))
	}
	act.SetInt(agent.ScopeTransaction, varRisk, int64(risk(m)))
	return nil
}

// validID reports whether a client's request id may be kept: 1 to 128
// letters, digits, '-', '_', '.' or ':'.
func validID(id []byte) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// risk scores the request from 0 to 100.
func risk(m *agent.Message) int {
	score := 0
	if ua, ok := m.Bytes("ua"); !ok || len(ua) == 0 {
		score += riskNoUserAgent
	} else if containsAnyFold(ua, toolAgents) {
		score += riskToolUserAgent
	}
	if v, ok := m.Bytes("accept"); !ok || len(v) == 0 {
		score += riskNoAccept
	}
	if v, ok := m.Bytes("lang"); !ok || len(v) == 0 {
		score += riskNoLanguage
	}
	if method, ok := m.Bytes("method"); ok && !usualMethod(method) {
		score += riskOddMethod
	}
	if path, ok := m.Bytes("path"); ok {
		if containsAnyFold(path, traversals) {
			score += riskTraversal
		}
		if hasAnyPrefixFold(path, probedPaths) {
			score += riskProbe
		}
		if len(path) > 1024 {
			score += riskLongPath
		}
	}
	return min(score, maxRisk)
}

func usualMethod(m []byte) bool {
	switch string(m) { // no allocation: the conversion is only compared
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// containsAnyFold reports whether s contains one of subs, ASCII case
// folded (subs are in lower case).
func containsAnyFold(s []byte, subs []string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if equalFold(s[i:i+len(sub)], sub) {
				return true
			}
		}
	}
	return false
}

// hasAnyPrefixFold reports whether s starts with one of prefixes, ASCII
// case folded (prefixes are in lower case).
func hasAnyPrefixFold(s []byte, prefixes []string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && equalFold(s[:len(p)], p) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals the lower-case ASCII string s, ASCII
// case folded.
func equalFold(b []byte, s string) bool {
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
