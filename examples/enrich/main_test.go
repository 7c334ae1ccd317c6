package main

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
