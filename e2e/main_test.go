package e2e

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
)

// TestMain checks that every test left no goroutine behind: the agents'
// connections, workers and handlers, the test proxies and HTTP clients.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(fleettest.RemovingBuilds(m))
}
