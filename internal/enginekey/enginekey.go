// Package enginekey holds the token that guards pkg/spoe's engine hooks:
// functions that pkg/dispatch and pkg/spoetest need (they reach into a
// Message's and an Actions' internals) but that handlers must not call.
// Code outside this module cannot import this package, so it cannot name
// or make a Key, and cannot call the hooks.
package enginekey

// Key is the token. Its zero value is the one to pass.
type Key struct{}
