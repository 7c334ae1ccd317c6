package agent_test

import (
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/leakcheck"
)

func TestMain(m *testing.M) {
	// TestCertFiles_Signal sends SIGHUP to this process until a reload
	// shows; one can still be on its way when the test stops listening,
	// and SIGHUP's default action would end the whole binary. This sink
	// listens for the binary's life.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	leakcheck.VerifyTestMain(m)
}
