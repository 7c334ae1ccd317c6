package spoe

import (
	"net/netip"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Actions collects the variables a handler sets and unsets; they are encoded
// straight into the ACK frame, with no intermediate list. The first invalid
// action (an empty or over-long name, an unknown scope) is not added and is
// reported by Err; the others still are.
//
// Actions is valid only until the handler returns.
type Actions struct {
	buf []byte // the ACK frame being built; actions start at base
	err error
	n   int
	// errVars are set to the error code if the current message fails
	// (SetErrorVar); cleared after each message.
	errVars  [4]Var
	nErrVars int
}

// SetErrorVar names a variable that the agent sets, as an integer, to the
// error code (ErrCode*) if the handling of the current message fails; it is
// set even when the handler's own actions are dropped (after a panic or a
// missed deadline). Middleware uses it (package middleware's ErrorVar); up to
// four per message.
func (a *Actions) SetErrorVar(scope Scope, name string) {
	if a.nErrVars < len(a.errVars) {
		a.errVars[a.nErrVars] = Var{Scope: scope, Name: name}
		a.nErrVars++
	}
}

// failed sets the variables named by SetErrorVar to code, and forgets them.
func (a *Actions) failed(code int) {
	for i := range a.nErrVars {
		a.SetInt(a.errVars[i].Scope, a.errVars[i].Name, int64(code))
		a.errVars[i] = Var{}
	}
	a.nErrVars = 0
}

// forgetErrorVars drops the variables named by SetErrorVar.
func (a *Actions) forgetErrorVars() {
	clear(a.errVars[:a.nErrVars])
	a.nErrVars = 0
}

// NewActions returns an empty, standalone Actions, for tests and tools that
// call handlers directly. Bytes returns the encoded action list.
func NewActions() *Actions { return &Actions{} }

func (a *Actions) keep(b []byte, err error) {
	a.buf = b
	if err != nil {
		if a.err == nil {
			a.err = err
		}
		return
	}
	a.n++
}

// Set sets the variable name in scope to v. Setting NULL unsets it.
func (a *Actions) Set(scope Scope, name string, v codec.Value) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, v))
}

// SetString sets a STRING variable.
func (a *Actions) SetString(scope Scope, name, value string) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, codec.String(value)))
}

// SetBytes sets a BINARY variable; value is copied into the ACK.
func (a *Actions) SetBytes(scope Scope, name string, value []byte) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, codec.Binary(value)))
}

// SetInt sets an integer variable (INT64, HAProxy's own integer type).
func (a *Actions) SetInt(scope Scope, name string, value int64) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, codec.Int64(value)))
}

// SetBool sets a boolean variable.
func (a *Actions) SetBool(scope Scope, name string, value bool) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, codec.Bool(value)))
}

// SetIP sets an IPV4 or IPV6 variable.
func (a *Actions) SetIP(scope Scope, name string, value netip.Addr) {
	a.keep(codec.AppendSetVar(a.buf, scope, name, codec.Addr(value)))
}

// Unset unsets a variable.
func (a *Actions) Unset(scope Scope, name string) {
	a.keep(codec.AppendUnsetVar(a.buf, scope, name))
}

// Len returns the number of actions added so far.
func (a *Actions) Len() int { return a.n }

// Err returns the first action that could not be added, or nil.
func (a *Actions) Err() error { return a.err }

// Bytes returns the encoded actions of a standalone Actions (NewActions).
func (a *Actions) Bytes() []byte { return a.buf }

// reset starts a new ACK for (sid, fid) in buf.
func (a *Actions) reset(buf []byte) {
	a.buf, a.err, a.n = buf, nil, 0
	a.forgetErrorVars()
}
