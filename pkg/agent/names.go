package agent

import (
	"maps"
	"slices"
)

// MessageNames returns the names of the SPOE messages that have a handler
// (Message, Handle), sorted; the fallback handler has no name and is not
// listed. Call it once the handlers are registered: package metrics uses it
// to show a series for each message before the first one arrives.
func (a *Agent) MessageNames() []string {
	return slices.Sorted(maps.Keys(a.handlers))
}
