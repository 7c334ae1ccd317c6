package agent

import (
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
)

// The handler-facing types are defined, and documented, in package spoe:
// these are aliases, so that code written against either package works with
// both.

// Message is spoe.Message: one SPOE message as a handler sees it.
type Message = spoe.Message

// Actions is spoe.Actions: the variables a handler sets and unsets.
type Actions = spoe.Actions

// Handler is spoe.Handler.
type Handler = spoe.Handler

// HandlerFunc is spoe.HandlerFunc.
type HandlerFunc = spoe.HandlerFunc

// Middleware is spoe.Middleware; see Agent.Use and package middleware.
type Middleware = spoe.Middleware

// PanicError is spoe.PanicError: a recovered handler panic.
type PanicError = spoe.PanicError

// Value is one typed SPOP value: an argument, or a variable to set.
type Value = codec.Value

// Arg is one argument of a message.
type Arg = codec.Arg

// Scope is the scope of a variable.
type Scope = codec.Scope

// Var is spoe.Var: a variable's scope and bare name.
type Var = spoe.Var

// The variable scopes.
const (
	ScopeProcess     = codec.ScopeProcess     // proc (needs "option force-set-var")
	ScopeSession     = codec.ScopeSession     // sess
	ScopeTransaction = codec.ScopeTransaction // txn
	ScopeRequest     = codec.ScopeRequest     // req
	ScopeResponse    = codec.ScopeResponse    // res
)

// Error codes set in the error variable (WithErrorVar): see spoe.ErrCodeHandler.
const (
	ErrCodeHandler  = spoe.ErrCodeHandler
	ErrCodePanic    = spoe.ErrCodePanic
	ErrCodeTimeout  = spoe.ErrCodeTimeout
	ErrCodeTooLarge = spoe.ErrCodeTooLarge
	ErrCodeAction   = spoe.ErrCodeAction
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
