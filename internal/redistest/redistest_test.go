package redistest_test

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/redistest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServer: a server answers, keeps what it is told, refuses connections
// once killed, hangs when paused, and comes back empty on the same address.
func TestServer(t *testing.T) {
	s := redistest.Start(t)
	require.NoError(t, redistest.Ping(s.Addr))
	got, err := redistest.Do(s.Addr, "SET", "k", "v")
	require.NoError(t, err)
	require.Equal(t, "OK", got)
	got, err = redistest.Do(s.Addr, "EXISTS", "k")
	require.NoError(t, err)
	require.Equal(t, "1", got)

	require.NoError(t, s.Pause())
	require.Error(t, redistest.Ping(s.Addr), "a paused server does not answer")
	require.NoError(t, s.Resume())
	require.NoError(t, redistest.Ping(s.Addr))

	require.NoError(t, s.Kill())
	require.Error(t, redistest.Ping(s.Addr), "a killed server refuses connections")
	require.NoError(t, s.Restart())
	require.NoError(t, redistest.Ping(s.Addr))
	got, err = redistest.Do(s.Addr, "EXISTS", "k")
	require.NoError(t, err)
	require.Equal(t, "0", got, "a restarted server starts empty (no persistence)")
}
