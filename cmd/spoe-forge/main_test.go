package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBinary builds the command and runs it as a process, to check the exit
// statuses that a shell or a container runtime sees, and notify's reading
// of a real standard input.
func TestBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build spoe-forge")
	bin := filepath.Join(t.TempDir(), "spoe-forge")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	agentPort := startAgent(t)
	echoPort := echoAgent(t)
	cases := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		{"healthy", []string{"healthcheck", "--port", strconv.Itoa(agentPort)}, "", exitHealthy, "healthy: 127.0.0.1:", ""},
		{"healthy quiet", []string{"healthcheck", "--quiet", "--port", strconv.Itoa(agentPort)}, "", exitHealthy, "", ""},
		{"closed port", []string{"healthcheck", "--port", strconv.Itoa(closedPort(t)), "--timeout", "1s"}, "", exitUnhealthy, "", "connection refused"},
		{"closed port quiet", []string{"healthcheck", "--quiet", "--port", strconv.Itoa(closedPort(t))}, "", exitUnhealthy, "", ""},
		{"unknown flag", []string{"healthcheck", "--nope"}, "", exitUsage, "", "flag provided but not defined"},
		{"no command", nil, "", exitUsage, "", "no command given"},
		{"help", []string{"--help"}, "", exitHealthy, "Usage: spoe-forge", ""},
		{"healthcheck help", []string{"healthcheck", "--help"}, "", exitHealthy, "Usage: spoe-forge healthcheck", ""},
		{"notify", []string{"notify", "--port", strconv.Itoa(echoPort), "--message", "echo", "--arg", "n=int64:42", "--arg", "in=-"}, "from a pipe",
			exitAck, "set-var txn.n int64 42\nset-var txn.in bin \"from a pipe\"\n", ""},
		{"notify json", []string{"notify", "--json", "--port", strconv.Itoa(echoPort), "--message", "unset", "--arg", "user=null"}, "",
			exitAck, `"actions":[{"action":"unset-var","scope":"sess","name":"user"}]`, ""},
		{"notify, closed port", []string{"notify", "--port", strconv.Itoa(closedPort(t)), "--message", "m"}, "", exitFailed, "", "connection refused"},
		{"notify usage", []string{"notify", "--message", "m", "--arg", "x=int64:z"}, "", exitUsage, "", `"z" is not an int64`},
		{"notify help", []string{"notify", "--help"}, "", exitAck, "EXIT STATUS", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			cmd.Stdin = strings.NewReader(c.stdin)
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
