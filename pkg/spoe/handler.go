package spoe

import (
	"context"
	"fmt"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Handler handles one SPOE message.
//
// ctx carries the NOTIFY's deadline, is cancelled when the connection dies
// or the agent stops, and ends when the handler returns; it stays a valid,
// ended context after that (see the package documentation, "Lifetimes"). m
// and everything obtained from it, and a, are valid only until the handler
// returns.
//
// A handler that returns an error, panics or misses its deadline is
// logged, the error variable is set if one is configured, and the NOTIFY is
// acknowledged all the same. The actions it added are kept after an error,
// and dropped after a panic or a missed deadline (they would be stale).
type Handler interface {
	HandleMessage(ctx context.Context, m *Message, a *Actions) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message, a *Actions) error

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, m *Message, a *Actions) error {
	return f(ctx, m, a)
}

// Middleware wraps a Handler with behaviour of its own: recovery, timeouts,
// logging, metrics. Middleware is applied once, when the agent starts; only
// the Handler it returns runs per message, so a middleware that allocates
// nothing per call keeps the NOTIFY path free of allocations.
type Middleware func(Handler) Handler

// Chain wraps h in mw so that mw[0] is the outermost: Chain(h, a, b) calls
// a, which calls b, which calls h. Nil middleware is skipped.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// PanicError is what a handler panic becomes when a Recover middleware
// catches it. The agent treats it like a panic it caught itself: it drops
// the handler's actions and sets ErrCodePanic.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Var names a variable: a scope and a bare name (HAProxy adds the
// spoe-agent's var-prefix).
type Var struct {
	Scope Scope
	Name  string
}

// Scope is the scope of a variable.
type Scope = codec.Scope

// The variable scopes.
const (
	ScopeProcess     = codec.ScopeProcess     // proc (needs "option force-set-var")
	ScopeSession     = codec.ScopeSession     // sess
	ScopeTransaction = codec.ScopeTransaction // txn
	ScopeRequest     = codec.ScopeRequest     // req
	ScopeResponse    = codec.ScopeResponse    // res
)

// Value is one typed SPOP value: an argument, or a variable to set.
type Value = codec.Value

// Arg is one argument of a message: a name and a Value.
type Arg = codec.Arg

// Headers is an HTTP header block in HAProxy's binary form (req.hdrs_bin,
// res.hdrs_bin); Message.Headers returns one.
type Headers = codec.Headers
