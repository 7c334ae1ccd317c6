package main

import (
	"os"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o600) }
