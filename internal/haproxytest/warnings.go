package haproxytest

import (
	"os"
	"regexp"
	"strings"
)

// rootWarnings are the warnings HAProxy 3.4 prints on every start as root
// when the global section has no "chroot" and no "user"/"uid". They are
// about how the process was started (tests and CI run as root), not about
// the configuration under test, which must not carry "chroot /" or "uid 0"
// just to silence them: the example and docker/ configurations are written
// for users, who should not run HAProxy as root. Each expression matches the
// whole line, with only the pid and the binary's path left free, so that any
// other wording, or any other warning, still counts.
var rootWarnings = []*regexp.Regexp{
	rootWarning(`HAProxy was started as root without any 'chroot' directive. ` +
		`A chroot limits filesystem access of an intruder to a single, preferably empty, directory. ` +
		`It is strongly recommended to enable this feature whenever possible (it's always possible when starting as root), ` +
		`via 'chroot auto' in the global section. ` +
		`If you think you have good reasons for running outside a chroot, explicitly configure 'chroot /' to silence this warning.`),
	rootWarning(`HAProxy was started as the root user and does not make use of 'user' nor 'uid' global options to drop the privileges. ` +
		`This is generally considered as a bad practice security-wise. ` +
		`If running as root is intentional, please make it explicit using 'uid 0' or 'user root', ` +
		`and also please consider using the 'chroot' directive to isolate the process into a totally empty and read-only directory if possible. ` +
		`Also, since your operating system supports it, always prefer relying on capabilities with unprivileged users than running with full privileges ` +
		`(look for 'setcap' in the configurationmanual).`),
}

// rootWarning matches one whole warning line of HAProxy's main() with the
// text msg: "[WARNING]  (pid) : [/path/to/haproxy.main()] msg".
func rootWarning(msg string) *regexp.Regexp {
	return regexp.MustCompile(`^\[WARNING\] +\(\d+\) : \[[^\]\n]*haproxy\.main\(\)\] ` + regexp.QuoteMeta(msg) + `$`)
}

// Warnings returns the lines of HAProxy's output (Proc.Output, or that of
// "haproxy -c") that carry "[WARNING]" or "[ALERT]", in order, except the
// two warnings HAProxy 3.4 prints when started as root without "chroot" and
// "user"/"uid" (see rootWarnings), which are dropped only when this process
// runs as root. A test that must start cleanly fails if the result is not
// empty.
func Warnings(output string) []string {
	return warnings(output, os.Geteuid() == 0)
}

// warnings is Warnings, with whether HAProxy ran as root given.
func warnings(output string, root bool) []string {
	var out []string
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if !strings.Contains(line, "[WARNING]") && !strings.Contains(line, "[ALERT]") {
			continue
		}
		if root && isRootWarning(line) {
			continue
		}
		out = append(out, line)
	}
	return out
}

func isRootWarning(line string) bool {
	for _, re := range rootWarnings {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}
