package haproxytest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The two lines HAProxy 3.4.7 printed, started as root by this package, on a
// configuration without "chroot" and "user"/"uid" (copied from its output).
const (
	rootChrootLine = `[WARNING]  (12597) : [/var/cache/spoe-forge/haproxy/3.4/usr/sbin/haproxy.main()] HAProxy was started as root without any 'chroot' directive. A chroot limits filesystem access of an intruder to a single, preferably empty, directory. It is strongly recommended to enable this feature whenever possible (it's always possible when starting as root), via 'chroot auto' in the global section. If you think you have good reasons for running outside a chroot, explicitly configure 'chroot /' to silence this warning.`
	rootUIDLine    = `[WARNING]  (12597) : [/var/cache/spoe-forge/haproxy/3.4/usr/sbin/haproxy.main()] HAProxy was started as the root user and does not make use of 'user' nor 'uid' global options to drop the privileges. This is generally considered as a bad practice security-wise. If running as root is intentional, please make it explicit using 'uid 0' or 'user root', and also please consider using the 'chroot' directive to isolate the process into a totally empty and read-only directory if possible. Also, since your operating system supports it, always prefer relying on capabilities with unprivileged users than running with full privileges (look for 'setcap' in the configurationmanual).`
	notice         = `[NOTICE]   (12597) : haproxy version is 3.4.7-1`
	timeoutLine    = `[WARNING]  (13737) : missing timeouts for frontend 'fe'.`
	alertLine      = `[ALERT]    (13737) : config : parsing [/tmp/haproxy.cfg:9] : unknown keyword 'bogus'.`
)

func TestWarningsFilter(t *testing.T) {
	lines := func(l ...string) string { return strings.Join(l, "\n") + "\n" }
	cases := []struct {
		name string
		out  string
		root bool
		want []string
	}{
		{"nothing", lines(notice), true, nil},
		{"the two root warnings, as root", lines(notice, rootChrootLine, rootUIDLine), true, nil},
		{"CRLF line ends", strings.ReplaceAll(lines(rootChrootLine, rootUIDLine), "\n", "\r\n"), true, nil},
		{"the two root warnings, not as root", lines(rootChrootLine, rootUIDLine), false, []string{rootChrootLine, rootUIDLine}},
		{"another warning still counts", lines(rootChrootLine, timeoutLine, rootUIDLine), true, []string{timeoutLine}},
		{"an alert still counts", lines(alertLine, rootUIDLine), true, []string{alertLine}},
		{"an unknown warning", lines(`[WARNING]  (1) : something new.`), true, []string{`[WARNING]  (1) : something new.`}},
		// Exact: any change to the known lines is another warning.
		{"a root warning with one more sentence", lines(rootChrootLine + " And more."), true, []string{rootChrootLine + " And more."}},
		{"a root warning cut short", lines(rootUIDLine[:200]), true, []string{rootUIDLine[:200]}},
		{"a root warning as an alert", lines(strings.Replace(rootChrootLine, "[WARNING] ", "[ALERT]   ", 1)), true,
			[]string{strings.Replace(rootChrootLine, "[WARNING] ", "[ALERT]   ", 1)}},
		{"a root warning from another function", lines(strings.Replace(rootUIDLine, "haproxy.main()", "haproxy.init()", 1)), true,
			[]string{strings.Replace(rootUIDLine, "haproxy.main()", "haproxy.init()", 1)}},
		{"a root warning text after another prefix", lines(`[WARNING]  (1) : config : ` + rootChrootLine[strings.Index(rootChrootLine, "HAProxy was"):]), true,
			[]string{`[WARNING]  (1) : config : ` + rootChrootLine[strings.Index(rootChrootLine, "HAProxy was"):]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, warnings(c.out, c.root))
		})
	}
	// Warnings decides "root" from this process's effective uid.
	require.Equal(t, warnings(lines(rootChrootLine, timeoutLine), os.Geteuid() == 0), Warnings(lines(rootChrootLine, timeoutLine)))
}

// TestWarningsOfRealHAProxy starts every version on a configuration without
// "chroot" and "user"/"uid": nothing is left once the known root warnings
// are dropped. With "chroot /" and "uid 0" (root only), 3.4 prints no warning
// at all, which shows that the dropped lines were those two and nothing
// else. A configuration with a real problem (no timeouts) still warns.
func TestWarningsOfRealHAProxy(t *testing.T) {
	root := os.Geteuid() == 0
	for _, v := range All {
		t.Run(string(v), func(t *testing.T) {
			bin := Binary(t, v)
			port := FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)

			// A request answered means HAProxy's start-up is over, and
			// so are its start-up messages.
			started := func(cfg string) *Proc {
				t.Helper()
				p := Start(t, bin, cfg, addr)
				status, _ := get(t, "http://"+addr+"/")
				require.Equal(t, 200, status)
				require.NoError(t, p.Kill())
				_ = p.Wait(stopTimeout)
				return p
			}

			p := started(httpConfig(port, "ok"))
			require.Empty(t, Warnings(p.Output()), "output:\n%s", p.Output())
			if root && v == V34 {
				require.Len(t, warnings(p.Output(), false), 2, "3.4 as root warns about chroot and uid; output:\n%s", p.Output())
			}

			if root {
				p := started("global\n    chroot /\n    uid 0\n" + httpConfig(port, "ok"))
				require.Empty(t, warnings(p.Output(), false), "output:\n%s", p.Output())
			}

			p = started(fmt.Sprintf("defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:%d\n    http-request return status 200\n", port))
			w := Warnings(p.Output())
			require.Len(t, w, 1, "output:\n%s", p.Output())
			require.Contains(t, w[0], "missing timeouts for frontend 'fe'")
		})
	}
}
