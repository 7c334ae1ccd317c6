// Command spoe-forge is the command-line companion of agents built with
// spoe-forge.
//
// Its one subcommand, healthcheck, checks an SPOE agent exactly as HAProxy's
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name) and returns the
// exit status. Results go to stdout, usage errors and failures to stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "spoe-forge: no command given")
		usage(stderr)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "healthcheck":
		return runHealthcheck(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && cmd == "help" {
			switch rest[0] {
			case "healthcheck":
				healthcheckUsage(stdout)
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
  help [command]  print this help, or a command's

Run "spoe-forge <command> --help" for a command's flags.
`)
}
