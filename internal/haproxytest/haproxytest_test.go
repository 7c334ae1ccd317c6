package haproxytest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const defaults = `
defaults
    mode http
    timeout connect 5s
    timeout client  10s
    timeout server  10s
`

// httpConfig is a frontend on 127.0.0.1:port that answers every request with
// 200 and body.
func httpConfig(port int, body string) string {
	return defaults + fmt.Sprintf(`
frontend fe
    bind 127.0.0.1:%d
    http-request return status 200 content-type text/plain string %s
`, port, body)
}

// spoeConfig is an HAProxy configuration with an SPOE filter whose agent
// backend uses mode (tcp or spop), and its SPOE file written in dir.
func spoeConfig(t *testing.T, v Version, mode string) string {
	t.Helper()
	timeouts := "    timeout processing 1s\n"
	if v.Legacy() {
		timeouts += "    timeout hello 2s\n    timeout idle 30s\n"
	}
	spoe := "[e2e]\nspoe-agent e2e-agent\n    messages check\n    option var-prefix e2e\n" + timeouts +
		"    use-backend be_spoa\n\nspoe-message check\n    args ip=src path=path\n    event on-frontend-http-request\n"
	path := filepath.Join(t.TempDir(), "spoe.conf")
	require.NoError(t, os.WriteFile(path, []byte(spoe), 0o644))
	return defaults + fmt.Sprintf(`
frontend fe
    bind 127.0.0.1:%d
    filter spoe engine e2e config %s
    http-request return status 200 content-type text/plain string ok

backend be_spoa
    mode %s
    timeout connect 2s
    timeout server  30s
    option spop-check
    server agent1 127.0.0.1:%d check inter 5s
`, FreePort(t), path, mode, FreePort(t))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestVersionNames(t *testing.T) {
	require.Equal(t, []Version{"2.6", "3.0", "3.2", "3.4"}, All)
	require.True(t, V26.Legacy())
	require.True(t, V30.Legacy())
	require.False(t, V32.Legacy())
	require.False(t, V34.Legacy())
	require.Equal(t, "SPOE_HAPROXY_2_6", V26.EnvVar())
	require.Equal(t, "SPOE_HAPROXY_3_2", V32.EnvVar())
	require.Equal(t, "SPOE_HAPROXY_3_4", V34.EnvVar())
	require.Contains(t, find("3.1").why, "unsupported version")
}

func TestCheck(t *testing.T) {
	for _, v := range All {
		t.Run(string(v), func(t *testing.T) {
			bin := Binary(t, v)
			require.NoError(t, Check(t, bin, httpConfig(FreePort(t), "ok")))

			err := Check(t, bin, httpConfig(FreePort(t), "ok")+"    no-such-keyword here\n")
			require.Error(t, err)
			require.Contains(t, err.Error(), "no-such-keyword", "the error carries HAProxy's output")

			// Accepted with a warning is not accepted.
			err = Check(t, bin, "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:1\n")
			require.Error(t, err)
			require.Contains(t, err.Error(), "missing timeouts for frontend 'fe'")

			if v.Legacy() {
				require.NoError(t, Check(t, bin, spoeConfig(t, v, "tcp")))
				err := Check(t, bin, spoeConfig(t, v, "spop"))
				require.Error(t, err, "%s must reject mode spop", v)
				require.Contains(t, err.Error(), "spop")
			} else {
				require.NoError(t, Check(t, bin, spoeConfig(t, v, "spop")))
			}
		})
	}
}

func TestStartReloadStop(t *testing.T) {
	for _, v := range All {
		t.Run(string(v), func(t *testing.T) {
			bin := Binary(t, v)
			port := FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			url := "http://" + addr + "/"

			p := Start(t, bin, httpConfig(port, "ok"), addr)
			require.NotZero(t, p.Pid())
			status, body := get(t, url)
			require.Equal(t, 200, status)
			require.Equal(t, "ok", body)

			// Reload: the new process takes over, the old one stops softly.
			p2 := Reload(t, p, bin, httpConfig(port, "v2"), addr)
			require.NotEqual(t, p.Pid(), p2.Pid())
			require.NoError(t, p.Wait(10*time.Second), "old process after -sf; output:\n%s", p.Output())
			status, body = get(t, url)
			require.Equal(t, 200, status)
			require.Equal(t, "v2", body)

			// SoftStop ends a process with no connections.
			require.NoError(t, p2.SoftStop())
			require.NoError(t, p2.Wait(10*time.Second), "output:\n%s", p2.Output())

			// Kill, and Wait reports the signal.
			p3 := Start(t, bin, httpConfig(port, "ok"), addr)
			require.Error(t, p3.Wait(50*time.Millisecond), "still running")
			require.NoError(t, p3.Kill())
			err := p3.Wait(10 * time.Second)
			require.Error(t, err)
			require.Contains(t, err.Error(), "killed")
		})
	}
}

func TestStartFailsOnEarlyExit(t *testing.T) {
	bin := Binary(t, V26)
	// A frontend whose port is taken (by a listener without SO_REUSEPORT):
	// HAProxy exits at once, and Start must say so rather than wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, bin, httpConfig(port, "ok"), fmt.Sprintf("127.0.0.1:%d", FreePort(t)))
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not give up")
	}
	require.True(t, ft.fatal, "Start must fail the test")
	require.Contains(t, ft.msg, "exited")
	require.Contains(t, ft.msg, "bind", "the message carries HAProxy's output")
}

// fakeT records a Fatalf and ends the calling goroutine, as testing.T does.
type fakeT struct {
	testing.TB
	fatal bool
	msg   string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
