package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBinary builds the command and runs it as a process, to check the exit
// statuses that a shell or a container runtime sees.
func TestBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build spoe-forge")
	bin := filepath.Join(t.TempDir(), "spoe-forge")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	agentPort := startAgent(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"healthy", []string{"healthcheck", "--port", strconv.Itoa(agentPort)}, exitHealthy, "healthy: 127.0.0.1:", ""},
		{"healthy quiet", []string{"healthcheck", "--quiet", "--port", strconv.Itoa(agentPort)}, exitHealthy, "", ""},
		{"closed port", []string{"healthcheck", "--port", strconv.Itoa(closedPort(t)), "--timeout", "1s"}, exitUnhealthy, "", "connection refused"},
		{"closed port quiet", []string{"healthcheck", "--quiet", "--port", strconv.Itoa(closedPort(t))}, exitUnhealthy, "", ""},
		{"unknown flag", []string{"healthcheck", "--nope"}, exitUsage, "", "flag provided but not defined"},
		{"no command", nil, exitUsage, "", "no command given"},
		{"help", []string{"--help"}, exitHealthy, "Usage: spoe-forge", ""},
		{"healthcheck help", []string{"healthcheck", "--help"}, exitHealthy, "Usage: spoe-forge healthcheck", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, c.code, code, "stdout %q, stderr %q", stdout.String(), stderr.String())
			if c.stdout == "" {
				require.Empty(t, stdout.String())
			} else {
				require.Contains(t, stdout.String(), c.stdout)
			}
			if c.stderr == "" {
				require.Empty(t, stderr.String())
			} else {
				require.Contains(t, stderr.String(), c.stderr)
			}
		})
	}
}
