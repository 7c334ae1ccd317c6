// Package childproc runs the child processes of tests (HAProxy, agents,
// Redis): started with their output captured, reaped in the background,
// killed with the test binary if it dies without running its cleanups, and
// stopped with a signal, then SIGKILL, within bounded times.
package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// ErrKilled is matched by Stop's error when the process did not exit on its
// signal in time and SIGKILL ended it.
var ErrKilled = errors.New("did not exit on its signal in time; killed")

// Proc is a child process started by Start.
type Proc struct {
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{} // closed once the process has been reaped
	err  error         // cmd.Wait's result; read only after done is closed
}

// Start starts cmd with its stdout and stderr going to the Proc's Output,
// and reaps it in the background. It sets cmd.SysProcAttr so that the child
// gets SIGKILL if the test binary dies first (go test's timeout, say): that
// signal is tied to the thread that started the child, which stays locked
// to its goroutine until the child is reaped.
func Start(cmd *exec.Cmd) (*Proc, error) {
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{cmd: cmd, out: out, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns what the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error (nil for status 0, an
// *exec.ExitError otherwise); call it once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has been reaped, waiting up to within
// (not at all when within <= 0).
func (p *Proc) Exited(within time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	if within <= 0 {
		return false
	}
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0), or an error if it is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	if !p.Exited(timeout) {
		return fmt.Errorf("pid %d still running after %v", p.Pid(), timeout)
	}
	return p.err
}

// Stop ends the process if it still runs: sig, then SIGKILL if it has not
// exited within timeout, and it waits up to timeout again for the reaping.
// It returns nil if the process exited on sig (or before), an error
// matching ErrKilled if SIGKILL ended it, and another error if it is still
// running or could not be signalled.
func (p *Proc) Stop(sig os.Signal, timeout time.Duration) error {
	if p.Exited(0) {
		return nil
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%v: %w", sig, err)
	}
	if p.Exited(timeout) {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	if p.Exited(timeout) {
		return fmt.Errorf("not stopped within %v of %v: %w", timeout, sig, ErrKilled)
	}
	return fmt.Errorf("still running %v after SIGKILL", timeout)
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: the
// output of a child process read while it runs.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends b.
func (s *SyncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
