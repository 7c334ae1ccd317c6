package e2e

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
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
	leakcheck.VerifyTestMain(cleanRun{m})
}
