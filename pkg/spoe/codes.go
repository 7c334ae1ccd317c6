package spoe

// The values the agent sets its error variable to (agent.WithErrorVar,
// middleware.ErrorVar) when the handling of a message fails.
const (
	ErrCodeHandler  = 1 // the handler returned an error
	ErrCodePanic    = 2 // the handler panicked
	ErrCodeTimeout  = 3 // the deadline passed before the handler returned, or it returned its context's error
	ErrCodeTooLarge = 4 // the actions did not fit in one ACK frame
	ErrCodeAction   = 5 // an action was invalid (empty or over-long name, bad scope)
)
