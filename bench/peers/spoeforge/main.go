// Command spoeforge is the benchmark agent on spoe-forge (this repository):
// message check-request, reads ip and path, sets txn score (int) and ok
// (bool). -addr may be unix:/path; -tls-cert, -tls-key and -tls-client-ca
// serve mutual TLS (bench/run.sh compares the transports).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

func main() {
	tlsCert := flag.String("tls-cert", "", "serve TLS with this certificate (PEM), with -tls-key")
	tlsKey := flag.String("tls-key", "", "the key of -tls-cert (PEM)")
	tlsCA := flag.String("tls-client-ca", "", "require client certificates signed by these CAs (PEM): mutual TLS")
	f := peer.Parse("spoeforge")
	var opts []agent.Option
	if *tlsCert != "" {
		certs, err := agent.LoadCertFiles(*tlsCert, *tlsKey, *tlsCA, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		opts = append(opts, agent.WithTLS(certs.TLSConfig()))
	}
	a := agent.New(opts...)
	a.Message("check-request", func(_ context.Context, m *agent.Message, act *agent.Actions) error {
		ip, _ := m.IP("ip")
		path, _ := m.Bytes("path")
		act.SetInt(agent.ScopeTransaction, "score", peer.Score(path))
		act.SetBool(agent.ScopeTransaction, "ok", ip.Is4())
		return nil
	})
	peer.Run(f, func() error {
		l, err := agent.Listen(f.Addr) // host:port or unix:/path
		if err != nil {
			return err
		}
		return a.Serve(l)
	})
	_ = a.Close()
}
