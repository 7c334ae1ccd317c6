// Command spoe-forge is the command-line companion of SPOE agents, built
// with spoe-forge or not. It has two subcommands.
//
// # healthcheck
//
// healthcheck checks an SPOE agent exactly as HAProxy's
// "option spop-check" does: it connects, sends the same 82-byte health-check
// HAPROXY-HELLO and validates the AGENT-HELLO by the rules of HAProxy 3.2,
// the strictest of the versions spoe-forge supports. It is meant for
// container health checks and for people debugging an agent:
//
//	spoe-forge healthcheck --host 127.0.0.1 --port 12345 --timeout 2s
//	healthy: 127.0.0.1:12345 answered version 2.0, max-frame-size 16380, capabilities "pipelining,fragmentation"
//
// The exit status is 0 when the agent is healthy, 1 when it is not (connection
// refused, timeout, a missing, malformed or unacceptable AGENT-HELLO, a
// DISCONNECT instead of it) and 2 on bad usage. Unless --quiet is given, one
// line says what the agent negotiated (on standard output) or what was wrong
// (on standard error).
//
// # notify
//
// notify plays HAProxy for one exchange, as curl does for HTTP: it sends a
// HELLO and one NOTIFY carrying the messages and typed arguments given on
// the command line, and prints what the agent negotiated and the actions of
// its ACK, one per line or as JSON (--json):
//
//	spoe-forge notify --host 127.0.0.1 --port 12345 \
//	    --message check-request --arg ip=ipv4:192.0.2.7 --arg path=str:/admin \
//	    --arg n=int64:3 --arg body=@payload.bin --arg hdr=null
//	hello: version 2.0, max-frame-size 16380, capabilities "fragmentation"
//	ack: stream-id 1, frame-id 1, 2 actions
//	set-var txn.score int64 42
//	unset-var sess.user
//
// Its exit status is 0 when the agent answered with an ACK, 1 when it did
// not (refused, timeout, DISCONNECT, malformed answer) and 2 on bad usage.
// "spoe-forge notify --help" documents every value type and flag.
//
// # Reaching the agent
//
// Both take --host and --port, or --unix PATH for an agent on a unix
// socket, and speak TLS with --tls; --ca, --cert, --key, --server-name and
// --insecure-skip-verify (each implies --tls) mirror HAProxy's server line,
// so that an agent requiring client certificates can be checked as HAProxy
// reaches it:
//
//	spoe-forge healthcheck --host 10.0.0.5 --ca agent-ca.pem --cert haproxy.pem
//	healthy: 10.0.0.5:12345 answered version 2.0, max-frame-size 16380, capabilities "fragmentation", over TLS 1.3
//
// Install it with
//
//	go install github.com/spoe-forge/spoe-forge/cmd/spoe-forge@latest
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitHealthy   = 0 // the agent answered an acceptable AGENT-HELLO (or help was asked for)
	exitUnhealthy = 1 // the agent did not
	exitUsage     = 2 // the command line was wrong
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name) and returns the
// exit status. stdin is what notify's "-" values read (nil: none). Results
// go to stdout, usage errors and failures to stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "spoe-forge: no command given")
		usage(stderr)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "healthcheck":
		return runHealthcheck(rest, stdout, stderr)
	case "notify":
		return runNotify(rest, stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && cmd == "help" {
			switch rest[0] {
			case "healthcheck":
				healthcheckUsage(stdout)
				return exitHealthy
			case "notify":
				notifyUsage(stdout)
				return exitHealthy
			default:
				fmt.Fprintf(stderr, "spoe-forge help: unknown command %q\n", rest[0])
				usage(stderr)
				return exitUsage
			}
		}
		usage(stdout)
		return exitHealthy
	default:
		fmt.Fprintf(stderr, "spoe-forge: unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

// usage prints the top-level help.
func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: spoe-forge <command> [flags]

Tools for HAProxy SPOE agents built with spoe-forge.

Commands:
  healthcheck     check an agent the way HAProxy's "option spop-check" does
  notify          send one NOTIFY to an agent as HAProxy would, print its ACK
  help [command]  print this help, or a command's

Run "spoe-forge <command> --help" for a command's flags.
`)
}
