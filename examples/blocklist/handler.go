package main

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

// varBlocked is the variable the handler sets, in the transaction scope
// (HAProxy adds the var-prefix: txn.blocklist.blocked with spoe.conf).
const varBlocked = "blocked"

// errNoIP: the message carries no "ip" argument of an address type.
var errNoIP = errors.New(`no "ip" argument (IPV4 or IPV6)`)

// checker is the handler of the check-ip message: it sets blocked when the
// "ip" argument is in the current list. The list is replaced as a whole
// (Store), so a reload never blocks or tears a lookup.
type checker struct {
	list atomic.Pointer[list]
}

// newChecker returns a checker of l.
func newChecker(l *list) *checker {
	c := &checker{}
	c.list.Store(l)
	return c
}

// Store replaces the list.
func (c *checker) Store(l *list) { c.list.Store(l) }

// HandleMessage implements agent.Handler.
func (c *checker) HandleMessage(_ context.Context, m *agent.Message, act *agent.Actions) error {
	ip, ok := m.IP("ip")
	if !ok {
		return errNoIP // the agent sets txn.blocklist.agent_error
	}
	act.SetBool(agent.ScopeTransaction, varBlocked, c.list.Load().Contains(ip))
	return nil
}
