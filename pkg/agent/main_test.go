package agent_test

import (
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// TestCertFiles_Signal sends SIGHUP to this process until a reload
	// shows; one can still be on its way when the test stops listening,
	// and SIGHUP's default action would end the whole binary. This sink
	// listens for the binary's life.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	goleak.VerifyTestMain(m,
		// ants starts its default pool when imported; those two goroutines
		// belong to it, not to us.
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}
