package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Defaults of the flags that say where the agent is: cmd/example's listen
// address, and a timeout in the range of HAProxy's default check timeout.
const (
	defaultHost    = "127.0.0.1"
	defaultPort    = 12345
	defaultTimeout = 2 * time.Second
)

// target is where and how a command reaches an agent, and for how long:
// the flags that every command talking to an agent shares (healthcheck,
// notify). It is the one place that knows transports: today TCP, to which
// --unix and --tls will be added here, for every command at once.
type target struct {
	host    string
	port    int
	timeout time.Duration
}

// register defines the target's flags on fs; timeoutHelp says what
// --timeout bounds in that command.
func (t *target) register(fs *flag.FlagSet, timeoutHelp string) {
	fs.StringVar(&t.host, "host", defaultHost, "agent `host` name or IP address")
	fs.IntVar(&t.port, "port", defaultPort, "agent TCP `port` (1-65535)")
	fs.DurationVar(&t.timeout, "timeout", defaultTimeout, timeoutHelp+" (a Go `duration`: 500ms, 2s)")
}

// check returns what is wrong with the target's flags, or "".
func (t *target) check() string {
	switch {
	case t.host == "":
		return "--host must not be empty"
	case t.port < 1 || t.port > 65535:
		return fmt.Sprintf("--port %d is out of range 1..65535", t.port)
	case t.timeout <= 0:
		return fmt.Sprintf("--timeout %v must be positive", t.timeout)
	}
	return ""
}

// addr names the agent in messages: "host:port".
func (t *target) addr() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

// dial connects to the agent within ctx. Its error is one of describeDialError's.
func (t *target) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.addr())
	if err != nil {
		return nil, describeDialError(err, t.timeout)
	}
	return c, nil
}

// parseFlags parses args with fs, which must have ContinueOnError, and
// returns what is wrong with them ("" if nothing) and whether help was
// asked for. check validates what was parsed and the arguments left.
func parseFlags(fs *flag.FlagSet, args []string, check func(rest []string) string) (bad string, help bool) {
	fs.SetOutput(io.Discard) // errors and help are printed by the caller
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return "", true
	} else if err != nil {
		return err.Error(), false
	}
	return check(fs.Args()), false
}

// printFlags prints fs's flags in the style of the commands' help.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(fl *flag.Flag) {
		name, help := flag.UnquoteUsage(fl)
		if name != "" {
			name = " " + name
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "[]" {
			def = " (default " + fl.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s%s\n        %s%s\n", fl.Name, name, help, def)
	})
}

// describeDialError explains a failed connect.
func describeDialError(err error, timeout time.Duration) error {
	var oe *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused: nothing listens there")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no connection within %v", timeout)
	case errors.As(err, &oe) && oe.Err != nil:
		return fmt.Errorf("cannot connect: %v", oe.Err)
	default:
		return fmt.Errorf("cannot connect: %v", err)
	}
}

// describeIOError explains a failed read or write.
func describeIOError(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no answer within %v", timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the agent closed the connection"
	case errors.Is(err, syscall.ECONNRESET):
		return "the agent reset the connection"
	case errors.Is(err, syscall.EPIPE):
		return "the agent closed the connection"
	default:
		return err.Error()
	}
}

// deadlineConn bounds a whole exchange: every deadline set on it is
// clamped to the exchange's deadline, so a client that sets one per step
// (spoetest's) cannot run past it.
type deadlineConn struct {
	net.Conn
	deadline time.Time
}

func (c *deadlineConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.deadline) {
		return c.deadline
	}
	return t
}

// SetDeadline implements net.Conn.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// SetWriteDeadline implements net.Conn.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}
