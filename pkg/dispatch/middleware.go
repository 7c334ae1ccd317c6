package dispatch

import (
	"fmt"
)

// Middleware wraps a Handler with behaviour of its own: recovery, timeouts,
// logging, metrics. Middleware is applied once, when the agent starts; only
// the Handler it returns runs per message, so a middleware that allocates
// nothing per call keeps the NOTIFY path free of allocations.
type Middleware func(Handler) Handler

// Chain wraps h in mw so that mw[0] is the outermost: Chain(h, a, b) calls
// a, which calls b, which calls h.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// PanicError is what a handler panic becomes when a Recover middleware
// catches it. The dispatcher treats it like a panic it caught itself: it
// drops the handler's actions and sets ErrCodePanic.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }
