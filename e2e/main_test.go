package e2e

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"go.uber.org/goleak"
)

// cleanRun removes the binaries the fleet tests built once the tests ran.
type cleanRun struct{ m *testing.M }

func (c cleanRun) Run() int {
	defer fleettest.RemoveBuilds()
	return c.m.Run()
}

// TestMain checks that every test left no goroutine behind: the agents'
// connections, workers and handlers, the test proxies and HTTP clients.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cleanRun{m},
		// ants starts its default pool when imported; those two goroutines
		// belong to it, not to us.
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}
