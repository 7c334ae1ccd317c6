package agent

import (
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/dispatch"
)

// Message is one SPOE message as a handler sees it: its name and typed
// arguments by name. See the package documentation for its lifetime.
type Message = dispatch.Message

// Actions collects the variables a handler sets and unsets.
type Actions = dispatch.Actions

// Handler handles one SPOE message.
type Handler = dispatch.Handler

// HandlerFunc adapts a function to Handler.
type HandlerFunc = dispatch.HandlerFunc

// Middleware wraps a Handler; see Agent.Use and package middleware.
type Middleware = dispatch.Middleware

// PanicError is the error a recovered handler panic becomes.
type PanicError = dispatch.PanicError

// Value is one typed SPOP value: an argument, or a variable to set.
type Value = codec.Value

// Arg is one argument of a message.
type Arg = codec.Arg

// Scope is the scope of a variable.
type Scope = codec.Scope

// Var names a variable: a scope and a bare name.
type Var = dispatch.Var

// The variable scopes.
const (
	ScopeProcess     = codec.ScopeProcess     // proc (needs "option force-set-var")
	ScopeSession     = codec.ScopeSession     // sess
	ScopeTransaction = codec.ScopeTransaction // txn
	ScopeRequest     = codec.ScopeRequest     // req
	ScopeResponse    = codec.ScopeResponse    // res
)

// Error codes set in the error variable (WithErrorVar).
const (
	ErrCodeHandler  = dispatch.ErrCodeHandler
	ErrCodePanic    = dispatch.ErrCodePanic
	ErrCodeTimeout  = dispatch.ErrCodeTimeout
	ErrCodeTooLarge = dispatch.ErrCodeTooLarge
	ErrCodeAction   = dispatch.ErrCodeAction
)

// Headers is an HTTP header block in HAProxy's binary form, as
// "args headers=req.hdrs_bin" sends it: Message.Headers returns it, and its
// Get, Has, Count and Iter methods look headers up without allocating.
type Headers = codec.Headers

// HeaderIter iterates over the pairs of a Headers block (Headers.Iter).
type HeaderIter = codec.HeaderIter

// HeadersError describes a malformed header block; it matches
// ErrBadHeaders with errors.Is.
type HeadersError = codec.HeadersError

// ErrBadHeaders is matched by every error about a malformed header block
// (Headers.Validate, HeaderIter.Err).
var ErrBadHeaders = codec.ErrBadHeaders
