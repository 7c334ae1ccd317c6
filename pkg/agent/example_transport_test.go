package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

// An agent for HAProxy on other machines: mutual TLS with certificates read
// from PEM files and reloaded when they change or on SIGHUP, and only
// HAProxy's network may connect. HAProxy's side is
//
//	server a1 10.0.0.5:12345 ssl verify required ca-file agent-ca.crt crt haproxy.pem
func ExampleLoadCertFiles() {
	dir := exampleCerts() // agent.crt, agent.key, haproxy-ca.crt; and this example's client
	defer os.RemoveAll(dir)
	certs, err := agent.LoadCertFiles(
		filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"),
		filepath.Join(dir, "haproxy-ca.crt"), // HAProxy's certificate must chain to it
		nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = certs.Watch(ctx, 10*time.Second, syscall.SIGHUP) }()

	a := agent.New(
		agent.WithTLS(certs.TLSConfig()),
		agent.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/24")),
	)
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = a.Serve(l) }()
	defer func() { _ = a.Close() }()

	// Play HAProxy: its client certificate, the agent's CA.
	nc, err := tls.Dial("tcp", l.Addr().String(), exampleClientConfig(dir))
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := spoetest.NewClient(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ack, err := c.Notify(spoetest.NewMessage("check-request"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("served", certs.Leaf().Subject.CommonName, "over", tls.VersionName(nc.ConnectionState().Version))
	fmt.Println(ack.Actions)
	// Output:
	// served agent over TLS 1.3
	// [set-var txn.ok=bool:true]
}

// An agent on the same host as HAProxy listens on a unix socket that only
// the socket's group may use; HAProxy's side is "server a1 unix@/run/spoa/agent.sock".
func ExampleWithSocketMode() {
	dir, _ := os.MkdirTemp("", "spoa") // /run/spoa, say
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "agent.sock")

	a := agent.New(agent.WithSocketMode(0o660))
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- a.ListenAndServe("unix:" + path) }()

	var c *spoetest.Client
	for range 100 { // until it listens
		nc, err := net.Dial("unix", path)
		if err == nil {
			c, _ = spoetest.NewClient(nc)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c == nil {
		fmt.Println("the agent does not listen")
		return
	}
	ack, err := c.Notify(spoetest.NewMessage("check-request"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fi, _ := os.Stat(path)
	fmt.Println(fi.Mode(), ack.Actions)
	_ = c.Close()
	_ = a.Close()
	<-done
	_, err = os.Stat(path)
	fmt.Println("removed on shutdown:", os.IsNotExist(err))
	// Output:
	// Srw-rw---- [set-var txn.ok=bool:true]
	// removed on shutdown: true
}

// exampleCerts writes a throwaway CA's certificates and keys for the
// examples to a new folder.
func exampleCerts() string {
	dir, err := os.MkdirTemp("", "spoe-example-certs")
	if err != nil {
		panic(err)
	}
	tb := panicTB{}
	ca := testpki.NewCA(tb, "example CA")
	ca.Issue(tb, "agent").WriteFiles(tb, dir, "agent")
	ca.Issue(tb, "haproxy").WriteFiles(tb, dir, "haproxy")
	testpki.WriteCAFile(tb, filepath.Join(dir, "haproxy-ca.crt"), ca)
	testpki.WriteCAFile(tb, filepath.Join(dir, "agent-ca.crt"), ca)
	return dir
}

// exampleClientConfig is HAProxy's side of the examples' TLS.
func exampleClientConfig(dir string) *tls.Config {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "haproxy.crt"), filepath.Join(dir, "haproxy.key"))
	if err != nil {
		panic(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "agent-ca.crt"))
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: testpki.ServerName}
}

type panicTB struct{}

func (panicTB) Helper() {}

func (panicTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
