// Package testpki makes throwaway certificate authorities and certificates
// for tests of TLS between HAProxy and agents. Everything is generated at
// test time (ECDSA P-256) and written, when needed, to the test's own
// temporary folder: no private key is ever committed.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TB is the part of testing.TB the package uses: an Example, which has no
// *testing.T, can pass its own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// ServerName is the DNS name in every certificate Issue makes, beside
// localhost, 127.0.0.1 and ::1: HAProxy's "verifyhost" and Go clients'
// ServerName can check it.
const ServerName = "agent.spoe.test"

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// Cert is a certificate and its private key.
type Cert struct {
	Leaf    *x509.Certificate
	CertPEM []byte // the certificate alone
	KeyPEM  []byte // its private key (PKCS #8)
}

// NewCA makes a self-signed CA named name.
func NewCA(t TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"spoe-forge tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testpki: CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: CA: %v", err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key}
}

// Issue makes a certificate for name, valid for both ends of a TLS
// connection (server and client authentication), for ServerName, localhost,
// 127.0.0.1 and ::1.
func (ca *CA) Issue(t TB, name string) *Cert {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"spoe-forge tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testpki: issue %s: %v", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: issue %s: %v", name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testpki: key of %s: %v", name, err)
	}
	return &Cert{Leaf: leaf, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("PRIVATE KEY", kder)}
}

// Pool returns a pool holding the CAs' certificates.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// TLS returns the certificate for a tls.Config.
func (c *Cert) TLS(t TB) tls.Certificate {
	t.Helper()
	tc, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatalf("testpki: key pair: %v", err)
	}
	return tc
}

// Files are the paths WriteFiles wrote.
type Files struct {
	Cert     string // the certificate
	Key      string // its key (mode 0600)
	Combined string // certificate then key, as HAProxy's "crt" wants them (mode 0600)
}

// WriteFiles writes the certificate and its key to dir as base.crt,
// base.key and base.pem (both together).
func (c *Cert) WriteFiles(t TB, dir, base string) Files {
	t.Helper()
	f := Files{
		Cert:     filepath.Join(dir, base+".crt"),
		Key:      filepath.Join(dir, base+".key"),
		Combined: filepath.Join(dir, base+".pem"),
	}
	WriteFile(t, f.Cert, c.CertPEM, 0o644)
	WriteFile(t, f.Key, c.KeyPEM, 0o600)
	WriteFile(t, f.Combined, append(append([]byte{}, c.CertPEM...), c.KeyPEM...), 0o600)
	return f
}

// WriteCAFile writes the CAs' certificates, one after the other, to path.
func WriteCAFile(t TB, path string, cas ...*CA) string {
	t.Helper()
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM...)
	}
	WriteFile(t, path, b, 0o644)
	return path
}

// WriteFile replaces path's contents atomically (a temporary file renamed
// over it), as certificate rotation tools do, so that a reader never sees a
// file half-written.
func WriteFile(t TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		t.Fatalf("testpki: writing %s: %v %v", path, werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatalf("testpki: %v", err)
	}
}

func newKey(t TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: key: %v", err)
	}
	return k
}

func serial(t TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("testpki: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
