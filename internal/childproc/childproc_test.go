package childproc_test

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, script string) *childproc.Proc {
	t.Helper()
	p, err := childproc.Start(exec.Command("sh", "-c", script))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(syscall.SIGKILL, 5*time.Second) })
	return p
}

func TestOutputAndExit(t *testing.T) {
	p := start(t, "echo out; echo err >&2; exit 3")
	err := p.Wait(5 * time.Second)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 3, exit.ExitCode())
	assert.Equal(t, err, p.Err())
	assert.Contains(t, p.Output(), "out\n")
	assert.Contains(t, p.Output(), "err\n")
	assert.True(t, p.Exited(0))
	assert.NoError(t, p.Stop(syscall.SIGTERM, time.Second), "an exited process stops at once")
}

func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		killed bool
	}{
		{"exits on SIGTERM", "exec sleep 30", false},
		{"ignores SIGTERM", `trap "" TERM; echo ready; while :; do sleep 0.05; done`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.script)
			if tc.killed {
				require.Eventually(t, func() bool { return p.Output() != "" }, 5*time.Second, 5*time.Millisecond, "the trap is set")
			}
			assert.False(t, p.Exited(50*time.Millisecond))
			require.Error(t, p.Wait(10*time.Millisecond), "still running")
			t0 := time.Now()
			err := p.Stop(syscall.SIGTERM, 300*time.Millisecond)
			if tc.killed {
				require.ErrorIs(t, err, childproc.ErrKilled)
				assert.GreaterOrEqual(t, time.Since(t0), 300*time.Millisecond)
			} else {
				require.NoError(t, err)
			}
			assert.True(t, p.Exited(0))
			select {
			case <-p.Done():
			default:
				t.Fatal("Done not closed")
			}
		})
	}
}

func TestStartFails(t *testing.T) {
	_, err := childproc.Start(exec.Command("/nonexistent/binary"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, exec.ErrNotFound) || errors.Is(err, syscall.ENOENT), "%v", err)
}
