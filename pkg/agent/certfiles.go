package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrNoCertificates is returned by LoadCertFiles and CertFiles.Reload when
// the client CA file holds no PEM certificate.
var ErrNoCertificates = errors.New("agent: no PEM certificate in the file")

// CertFiles serves the agent's TLS certificate and key, and optionally the
// CA certificates that client certificates must chain to, from PEM files,
// and reads them again when asked (Reload), when they change or on a signal
// (Watch). A reload affects new handshakes only: established connections
// keep theirs, so rotating certificates drops no connection. Files that do
// not load (a certificate that does not match its key, a rotation caught
// half-way) are reported and the previous ones stay in use.
//
// It is safe for concurrent use.
type CertFiles struct {
	certFile, keyFile, caFile string
	log                       *zap.Logger
	cur                       atomic.Pointer[certState]
}

// certState is one successful load of the files.
type certState struct {
	sum  [sha256.Size]byte // of the three files' contents
	leaf *x509.Certificate
	cfg  *tls.Config // the server configuration of handshakes
}

// LoadCertFiles reads certFile (the agent's certificate chain, leaf first)
// and keyFile (its private key), and clientCAFile unless it is empty: the
// CA certificates that sign HAProxy's client certificates. With a client CA
// file, its TLSConfig requires and verifies a client certificate (mutual
// TLS); without, any client may connect. log receives Watch's reports (nil:
// none).
func LoadCertFiles(certFile, keyFile, clientCAFile string, log *zap.Logger) (*CertFiles, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &CertFiles{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, log: log}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the files again and, if they load, serves them to new
// handshakes. On error the previous files stay in use.
func (f *CertFiles) Reload() error {
	certPEM, keyPEM, caPEM, sum, err := f.read()
	if err != nil {
		return err
	}
	return f.install(certPEM, keyPEM, caPEM, sum)
}

// install parses the files' contents and serves them to new handshakes.
func (f *CertFiles) install(certPEM, keyPEM, caPEM []byte, sum [sha256.Size]byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("agent: certificate %s with key %s: %w", f.certFile, f.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("agent: certificate %s: %w", f.certFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if f.caFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return fmt.Errorf("%w: client CA file %s", ErrNoCertificates, f.caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	// Fresh session ticket keys: a resumed session skips the client
	// certificate's verification, so one from before a reload (perhaps
	// under a CA since removed) must not resume.
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("agent: session ticket key: %w", err)
	}
	cfg.SetSessionTicketKeys([][32]byte{key})
	f.cur.Store(&certState{sum: sum, leaf: leaf, cfg: cfg})
	return nil
}

// read returns the files' contents and their digest.
func (f *CertFiles) read() (certPEM, keyPEM, caPEM []byte, sum [sha256.Size]byte, err error) {
	if certPEM, err = os.ReadFile(f.certFile); err != nil {
		return nil, nil, nil, sum, fmt.Errorf("agent: reading the certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(f.keyFile); err != nil {
		return nil, nil, nil, sum, fmt.Errorf("agent: reading the key: %w", err)
	}
	if f.caFile != "" {
		if caPEM, err = os.ReadFile(f.caFile); err != nil {
			return nil, nil, nil, sum, fmt.Errorf("agent: reading the client CA file: %w", err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	h.Sum(sum[:0])
	return certPEM, keyPEM, caPEM, sum, nil
}

// Leaf returns the certificate served to new handshakes.
func (f *CertFiles) Leaf() *x509.Certificate { return f.cur.Load().leaf }

// TLSConfig returns a server configuration for WithTLS that serves the files
// last loaded to every handshake.
func (f *CertFiles) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.cur.Load().cfg, nil
		},
	}
}

// Watch reloads the files whenever their contents change (checked every
// interval; never if it is not positive) and whenever one of signals
// arrives (syscall.SIGHUP, typically), until ctx ends; it then returns
// ctx's error. Each reload is logged: at Info level when it took effect,
// at Warn level when the files did not load, once per new contents (the
// previous files stay in use until the next change).
func (f *CertFiles) Watch(ctx context.Context, interval time.Duration, signals ...os.Signal) error {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	var sig chan os.Signal
	if len(signals) > 0 {
		sig = make(chan os.Signal, 1)
		signal.Notify(sig, signals...)
		defer signal.Stop(sig)
	}
	var failed [sha256.Size]byte // contents that did not load: not retried until they change
	unreadable := false          // said once until the files read again
	for {
		force := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
		case s := <-sig:
			force = true
			f.log.Info("TLS files: reloading on signal", zap.Stringer("signal", s))
		}
		certPEM, keyPEM, caPEM, sum, err := f.read()
		if err != nil {
			if !unreadable || force {
				f.log.Warn("TLS files: cannot read them; keeping the ones in use", zap.Error(err))
			}
			unreadable = true
			continue
		}
		unreadable = false
		if !force && (sum == f.cur.Load().sum || sum == failed) {
			continue
		}
		if err := f.install(certPEM, keyPEM, caPEM, sum); err != nil {
			failed = sum
			f.log.Warn("TLS files: reload failed; keeping the ones in use", zap.Error(err))
			continue
		}
		failed = [sha256.Size]byte{}
		leaf := f.Leaf()
		f.log.Info("TLS files: reloaded",
			zap.String("certificate", f.certFile),
			zap.String("subject", leaf.Subject.String()),
			zap.String("serial", leaf.SerialNumber.String()),
			zap.Time("not_after", leaf.NotAfter))
	}
}
