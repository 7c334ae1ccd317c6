package spoetest

import (
	"fmt"
	"net/netip"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Action is one decoded action of an ACK: a set-var or an unset-var. Unlike
// the agent's own types it owns its data, and may be kept.
type Action struct {
	// Type is codec.ActionSetVar or codec.ActionUnsetVar.
	Type codec.ActionType
	// Scope and Name name the variable as the handler did; HAProxy adds the
	// var-prefix.
	Scope agent.Scope
	Name  string
	// Value is the value set; NULL for an unset-var.
	Value agent.Value
}

// String describes the action, as "set-var txn.name=int64:5" or
// "unset-var txn.name".
func (a Action) String() string {
	if a.Type == codec.ActionUnsetVar {
		return fmt.Sprintf("%s %s.%s", a.Type, a.Scope, a.Name)
	}
	return fmt.Sprintf("%s %s.%s=%s:%v", a.Type, a.Scope, a.Name, a.Value.Type(), goValue(a.Value))
}

// Actions is the list of actions of one ACK, in order, with lookups by
// variable. HAProxy applies the actions in order, so a variable ends up as
// its last action leaves it; every lookup reads that last action.
type Actions []Action

// decodeActions decodes an action list. The actions alias b, which the
// caller gives up.
func decodeActions(b []byte) (Actions, error) {
	var ack codec.Ack
	if err := ack.Decode(b); err != nil {
		return nil, err
	}
	if len(ack.Actions) == 0 {
		return nil, nil
	}
	out := make(Actions, len(ack.Actions))
	for i, a := range ack.Actions {
		out[i] = Action{Type: a.Type, Scope: a.Scope, Name: string(a.Name), Value: a.Value}
	}
	return out, nil
}

// last returns the last action on the variable, or nil.
func (as Actions) last(scope agent.Scope, name string) *Action {
	for i := len(as) - 1; i >= 0; i-- {
		if as[i].Scope == scope && as[i].Name == name {
			return &as[i]
		}
	}
	return nil
}

// Has reports whether any action sets or unsets the variable.
func (as Actions) Has(scope agent.Scope, name string) bool {
	return as.last(scope, name) != nil
}

// Value returns the value the variable's last action sets. ok is false when
// no action touches the variable or the last one is an unset-var.
func (as Actions) Value(scope agent.Scope, name string) (v agent.Value, ok bool) {
	a := as.last(scope, name)
	if a == nil || a.Type != codec.ActionSetVar {
		return agent.Value{}, false
	}
	return a.Value, true
}

// String returns a STRING or BINARY variable. ok is false when it is not
// set, or set to another type.
func (as Actions) String(scope agent.Scope, name string) (string, bool) {
	v, ok := as.Value(scope, name)
	if !ok {
		return "", false
	}
	return v.String()
}

// Bytes returns a STRING or BINARY variable.
func (as Actions) Bytes(scope agent.Scope, name string) ([]byte, bool) {
	v, ok := as.Value(scope, name)
	if !ok {
		return nil, false
	}
	return v.Bytes()
}

// Int returns an integer variable of any integer type, as HAProxy reads it
// (an int64).
func (as Actions) Int(scope agent.Scope, name string) (int64, bool) {
	v, ok := as.Value(scope, name)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Bool returns a BOOL variable.
func (as Actions) Bool(scope agent.Scope, name string) (bool, bool) {
	v, ok := as.Value(scope, name)
	if !ok {
		return false, false
	}
	return v.Bool()
}

// IP returns an IPV4 or IPV6 variable.
func (as Actions) IP(scope agent.Scope, name string) (netip.Addr, bool) {
	v, ok := as.Value(scope, name)
	if !ok {
		return netip.Addr{}, false
	}
	return v.Addr()
}

// Unset reports whether the variable's last action removes it: an
// unset-var, or a set-var to NULL, which HAProxy treats alike.
func (as Actions) Unset(scope agent.Scope, name string) bool {
	a := as.last(scope, name)
	return a != nil && (a.Type == codec.ActionUnsetVar || a.Value.IsNull())
}

// Map returns every variable the actions touch, keyed "scope.name" (as
// "txn.blocked"; without HAProxy's var-prefix), with the Go value its last
// action leaves: bool, int64 (any integer type), string (STRING), []byte
// (BINARY), netip.Addr (IPV4, IPV6), or nil when the variable is removed
// (an unset-var, or a set-var to NULL). It suits require.Equal in
// table-driven tests. It returns an empty, non-nil map for no actions.
func (as Actions) Map() map[string]any {
	m := make(map[string]any, len(as))
	for _, a := range as {
		k := a.Scope.String() + "." + a.Name
		if a.Type == codec.ActionUnsetVar {
			m[k] = nil
			continue
		}
		m[k] = goValue(a.Value)
	}
	return m
}

// goValue converts a value to the Go value Map documents.
func goValue(v agent.Value) any {
	switch t := v.Type(); {
	case t == codec.TypeBool:
		b, _ := v.Bool()
		return b
	case t.IsInt():
		n, _ := v.Int()
		return n
	case t == codec.TypeString:
		s, _ := v.String()
		return s
	case t == codec.TypeBinary:
		b, _ := v.Bytes()
		return append([]byte{}, b...)
	case t == codec.TypeIPv4 || t == codec.TypeIPv6:
		a, _ := v.Addr()
		return a
	}
	return nil
}
