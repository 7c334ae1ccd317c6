package main

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
)

// cleanRun removes the binary the fleet tests built once the tests ran.
type cleanRun struct{ m *testing.M }

func (c cleanRun) Run() int {
	defer fleettest.RemoveBuilds()
	return c.m.Run()
}

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(cleanRun{m})
}
