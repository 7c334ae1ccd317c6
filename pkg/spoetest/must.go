package spoetest

import "testing"

// MustClient is a Client for a test's goroutine: every error fails the
// test (t.Fatal), so each method returns only its result.
type MustClient struct {
	t testing.TB
	c *Client
}

// MustDial dials addr as Dial does, failing the test on error. The
// connection is closed when the test ends.
func MustDial(t testing.TB, addr string, opts ...Option) *MustClient {
	t.Helper()
	c, err := Dial(addr, opts...)
	if err != nil {
		t.Fatalf("spoetest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &MustClient{t: t, c: c}
}

// Client returns the underlying Client, for the calls that may fail on
// purpose.
func (m *MustClient) Client() *Client { return m.c }

// Hello returns what the agent answered to the HELLO.
func (m *MustClient) Hello() Hello { return m.c.Hello() }

// Notify is Client.Notify.
func (m *MustClient) Notify(msgs ...Message) *Ack {
	m.t.Helper()
	a, err := m.c.Notify(msgs...)
	if err != nil {
		m.t.Fatalf("spoetest: Notify: %v", err)
	}
	return a
}

// Pipeline is Client.Pipeline.
func (m *MustClient) Pipeline(msgs ...Message) []*Ack {
	m.t.Helper()
	acks, err := m.c.Pipeline(msgs...)
	if err != nil {
		m.t.Fatalf("spoetest: Pipeline: %v", err)
	}
	return acks
}

// Send is Client.Send.
func (m *MustClient) Send(msgs ...Message) ID {
	m.t.Helper()
	id, err := m.c.Send(msgs...)
	if err != nil {
		m.t.Fatalf("spoetest: Send: %v", err)
	}
	return id
}

// Recv is Client.Recv.
func (m *MustClient) Recv() *Ack {
	m.t.Helper()
	a, err := m.c.Recv()
	if err != nil {
		m.t.Fatalf("spoetest: Recv: %v", err)
	}
	return a
}
