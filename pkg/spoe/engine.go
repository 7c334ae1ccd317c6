package spoe

import (
	"github.com/spoe-forge/spoe-forge/internal/enginekey"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// The functions below are the engine's side of Message and Actions: how
// pkg/dispatch points a pooled Message at a decoded message and encodes a
// handler's Actions straight into an ACK frame. Their first parameter is a
// token of an internal package, so that only this module can call them:
// handlers never need them.

// Bind points m at the decoded message cm of the NOTIFY (streamID,
// frameID) from engine engineID; name is the registered name ("" for the
// fallback handler, where Name reads cm's). Bind(k, m, "", nil, 0, 0, "")
// drops every reference.
func Bind(_ enginekey.Key, m *Message, name string, cm *codec.Message, streamID, frameID uint64, engineID string) {
	*m = Message{name: name, m: cm, streamID: streamID, frameID: frameID, engineID: engineID}
}

// Begin makes a collect actions appended to buf (the ACK frame's header).
func Begin(_ enginekey.Key, a *Actions, buf []byte) { a.reset(buf) }

// Encoded returns buf as given to Begin with every action appended since.
func Encoded(_ enginekey.Key, a *Actions) []byte { return a.buf }

// Mark is a point in an Actions to roll back to.
type Mark struct{ len, n int }

// MarkOf returns the current point of a.
func MarkOf(_ enginekey.Key, a *Actions) Mark { return Mark{len(a.buf), a.n} }

// Rollback drops the actions added since m (after a panic, or a missed
// deadline: they would be stale).
func Rollback(_ enginekey.Key, a *Actions, m Mark) { a.buf, a.n = a.buf[:m.len], m.n }

// Failed sets the variables named by SetErrorVar for the current message to
// code, and forgets them; Succeeded only forgets them.
func Failed(_ enginekey.Key, a *Actions, code int) { a.failed(code) }

// Succeeded: see Failed.
func Succeeded(_ enginekey.Key, a *Actions) { a.forgetErrorVars() }
