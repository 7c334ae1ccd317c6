package agent_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// listenAndServe runs a.ListenAndServe(addr) and returns its result channel
// once the socket answers, or the error it returned at once.
func listenAndServe(t *testing.T, a *agent.Agent, path string) (chan error, error) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- a.ListenAndServe("unix:" + path) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-served:
			return nil, err
		default:
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", path); err == nil {
				_ = c.Close()
				return served, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the agent did not listen on its unix socket")
	return nil, nil
}

// TestUnixSocketMode: ListenAndServe("unix:/path") serves HAProxy on a socket
// file with the mode of WithSocketMode, and removes the file on Shutdown.
func TestUnixSocketMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(shortTempDir(t), "agent.sock")
			a := agent.New(agent.WithSocketMode(mode))
			a.Message("m", echo)
			served, err := listenAndServe(t, a, path)
			require.NoError(t, err)
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, mode, fi.Mode().Perm())

			nc, err := net.Dial("unix", path)
			require.NoError(t, err)
			roundTrip(t, spoptest.NewClient(t, nc), "unix")

			require.NoError(t, a.Close())
			require.ErrorIs(t, <-served, agent.ErrAgentClosed)
			_, err = os.Lstat(path)
			require.ErrorIs(t, err, os.ErrNotExist, "the socket file must be removed when the agent stops")
		})
	}
}

// TestUnixSocketStale: a socket file nothing listens on (a crashed run's)
// is replaced; one that a process serves is left alone, and so is a path
// that is not a socket.
func TestUnixSocketStale(t *testing.T) {
	t.Run("stale socket file is replaced", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "agent.sock")
		crashed, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err)
		crashed.SetUnlinkOnClose(false)
		require.NoError(t, crashed.Close())
		_, err = net.Dial("unix", path)
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "the file is left, nothing listens")

		a := agent.New()
		a.Message("m", echo)
		served, err := listenAndServe(t, a, path)
		require.NoError(t, err)
		nc, err := net.Dial("unix", path)
		require.NoError(t, err)
		roundTrip(t, spoptest.NewClient(t, nc), "after a crash")
		require.NoError(t, a.Close())
		require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	})
	t.Run("socket in use is left alone", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "agent.sock")
		first := agent.New()
		first.Message("m", echo)
		served, err := listenAndServe(t, first, path)
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, first.Close())
			require.ErrorIs(t, <-served, agent.ErrAgentClosed)
		})

		second := agent.New()
		err = second.ListenAndServe("unix:" + path)
		require.ErrorIs(t, err, agent.ErrSocketInUse)
		require.NoError(t, second.Close())
		_, err = agent.Listen("unix:" + path)
		require.ErrorIs(t, err, agent.ErrSocketInUse)

		nc, err := net.Dial("unix", path)
		require.NoError(t, err)
		roundTrip(t, spoptest.NewClient(t, nc), "first agent")
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "agent.sock")
		require.NoError(t, os.WriteFile(path, []byte("precious"), 0o600))
		_, err := agent.Listen("unix:" + path)
		require.ErrorIs(t, err, agent.ErrNotSocket)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, "precious", string(b))
	})
	t.Run("no such folder", func(t *testing.T) {
		_, err := agent.Listen("unix:" + filepath.Join(shortTempDir(t), "missing", "agent.sock"))
		require.Error(t, err)
		require.False(t, errors.Is(err, agent.ErrSocketInUse))
	})
}
