package e2e

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// updateHdrsEnv, set to 1, makes TestE2E_HeadersBlock rewrite the captures
// in testdata/hdrsbin from what HAProxy sends, after checking them as usual.
const updateHdrsEnv = "SPOE_UPDATE_HDRSBIN"

// hdrsDir holds the header blocks captured from HAProxy.
var hdrsDir = filepath.Join("..", "testdata", "hdrsbin")

// pair is one header as the test expects it.
type pair struct{ Name, Value string }

// hdrsCase is one request sent through HAProxy byte for byte, and the
// headers req.hdrs_bin must carry; and the application's raw response and
// the headers res.hdrs_bin must carry.
type hdrsCase struct {
	name     string // also the request path, /case/<name>
	request  string // the raw request; %s is the path
	response string // the application's raw response
	wantReq  []pair
	wantRes  []pair
}

// The responses of the application. Every case gets okResponse but one.
const (
	okResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	// richResponse repeats Set-Cookie, has an empty value, a folded line,
	// non-ASCII bytes and mixed-case names.
	richResponse = "HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Set-Cookie: a=1; Path=/\r\n" +
		"Set-Cookie: b=2; HttpOnly\r\n" +
		"X-Empty:\r\n" +
		"X-Folded: one\r\n two\r\n" +
		"X-Utf8: caf\xc3\xa9\r\n" +
		"X-MiXeD: Value\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: close\r\n\r\nok"
)

var okPairs = []pair{{"content-type", "text/plain"}, {"content-length", "2"}}

var hdrsCases = []hdrsCase{
	{
		name:    "basic",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"user-agent", "curl/8.5.0"}, {"accept", "*/*"}},
	},
	{
		name: "repeated",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\n" +
			"X-Forwarded-For: 192.0.2.1\r\n" +
			"Cookie: a=1\r\n" +
			"X-Forwarded-For: 198.51.100.2, 203.0.113.3\r\n" +
			"Cookie: b=2\r\n" +
			"Accept-Language: fr\r\nAccept-Language: en;q=0.5\r\n" +
			"Connection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"x-forwarded-for", "192.0.2.1"}, {"cookie", "a=1"},
			{"x-forwarded-for", "198.51.100.2, 203.0.113.3"}, {"cookie", "b=2"},
			{"accept-language", "fr"}, {"accept-language", "en;q=0.5"}},
	},
	{
		name: "empty-values",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\n" +
			"X-Empty:\r\n" +
			"X-Blank:    \r\n" +
			"X-Tab:\t\t\r\n" +
			"X-Padded:   v a l   \r\n" +
			"Connection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"x-empty", ""}, {"x-blank", ""}, {"x-tab", ""}, {"x-padded", "v a l"}},
	},
	{
		// HAProxy accepts an obsolete line folding and turns its CR and
		// LF into two spaces, keeping the folded line's own whitespace.
		name: "folded",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\n" +
			"X-Folded: first\r\n  second\r\n\tthird\r\n" +
			"X-After: z\r\n" +
			"Connection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"x-folded", "first    second  \tthird"}, {"x-after", "z"}},
	},
	{
		name: "non-ascii",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\n" +
			"X-Utf8: caf\xc3\xa9 \xe2\x82\xac\r\n" +
			"X-Latin1: \xe9t\xe9\r\n" +
			"X-Bytes: \x80\xff\x7e\r\n" +
			"Connection: close\r\n\r\n",
		response: richResponse,
		wantReq: []pair{{"host", "example.test"}, {"x-utf8", "caf\xc3\xa9 \xe2\x82\xac"}, {"x-latin1", "\xe9t\xe9"},
			{"x-bytes", "\x80\xff\x7e"}},
		wantRes: []pair{{"content-type", "text/html; charset=utf-8"}, {"set-cookie", "a=1; Path=/"}, {"set-cookie", "b=2; HttpOnly"},
			{"x-empty", ""}, {"x-folded", "one   two"}, {"x-utf8", "caf\xc3\xa9"}, {"x-mixed", "Value"},
			{"content-length", "2"}},
	},
	{
		name: "mixed-case",
		request: "GET %s HTTP/1.1\r\nHOST: example.test\r\n" +
			"X-MiXeD-CaSe: Value With Case\r\n" +
			"AUTHORIZATION: Bearer abc.def.ghi\r\n" +
			"connection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"x-mixed-case", "Value With Case"}, {"authorization", "Bearer abc.def.ghi"}},
	},
	{
		name: "long-values",
		request: "GET %s HTTP/1.1\r\nHost: example.test\r\n" +
			"X-Long-239: " + strings.Repeat("a", 239) + "\r\n" +
			"X-Long-240: " + strings.Repeat("b", 240) + "\r\n" +
			"X-Long-5000: " + strings.Repeat("c", 5000) + "\r\n" +
			"Connection: close\r\n\r\n",
		wantReq: []pair{{"host", "example.test"}, {"x-long-239", strings.Repeat("a", 239)}, {"x-long-240", strings.Repeat("b", 240)},
			{"x-long-5000", strings.Repeat("c", 5000)}},
	},
	{
		name: "post",
		request: "POST %s HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\n" +
			"Connection: close\r\n\r\n{\"a\":[1,2,3]}",
		wantReq: []pair{{"host", "example.test"}, {"content-type", "application/json"}, {"content-length", "13"}},
	},
	{
		name:    "http10-no-headers",
		request: "GET %s HTTP/1.0\r\n\r\n",
		wantReq: []pair{},
	},
}

// hdrsRecord is what the agent received for one case.
type hdrsRecord struct {
	req, res []byte // the raw blocks, copied
}

// TestE2E_HeadersBlock: HAProxy's req.hdrs_bin and res.hdrs_bin reach a
// handler as a block that Message.Headers reads back header by header:
// repeated headers as separate pairs in order, empty values, a folded line
// joined, non-ASCII bytes untouched, names in lower case, lengths of one,
// two and three varint bytes, and a request without any header. The blocks
// are the ones stored in testdata/hdrsbin (SPOE_UPDATE_HDRSBIN=1 rewrites
// them).
func TestE2E_HeadersBlock(t *testing.T) {
	update := os.Getenv(updateHdrsEnv) == "1"
	var manifest hdrsManifest
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		var mu sync.Mutex
		got := map[string]*hdrsRecord{}
		record := func(m *agent.Message, dir string) (agent.Headers, error) {
			id, _ := m.String("case")
			h, ok := m.Headers("headers")
			if !ok {
				return nil, fmt.Errorf("case %q: no headers argument", id)
			}
			mu.Lock()
			defer mu.Unlock()
			r := got[id]
			if r == nil {
				r = &hdrsRecord{}
				got[id] = r
			}
			if dir == "req" {
				r.req = append([]byte{}, h...)
			} else {
				r.res = append([]byte{}, h...)
			}
			return h, h.Validate()
		}
		ta := startAgent(t, func(a *agent.Agent) {
			for _, dir := range []string{"req", "res"} {
				a.Message("hdrs-"+dir, func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
					h, err := record(m, dir)
					if err != nil {
						return err
					}
					act.SetInt(agent.ScopeTransaction, dir+"_count", int64(h.Count("")))
					return nil
				})
			}
		})
		app := startRawApp(t)
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr,
			Messages: "hdrs-req hdrs-res",
			SPOE: `
spoe-message hdrs-req
    args case=path,field(3,/) headers=req.hdrs_bin
    event on-frontend-http-request

spoe-message hdrs-res
    args case=var(txn.case) headers=res.hdrs_bin
    event on-http-response
`,
			Frontend: `
    http-request set-var(txn.case) path,field(3,/)
    http-response set-header X-Counts "%[var(txn.e2e.req_count,ABSENT)] %[var(txn.e2e.res_count,ABSENT)] %[var(txn.e2e.spoe_error,none)]"
    default_backend be_app
`,
			Extra: fmt.Sprintf(`
backend be_app
    server app %s
`, app.addr),
		}
		startHAProxy(t, bin, c)
		version := haproxyVersion(t, bin)

		for _, tc := range hdrsCases {
			t.Run(tc.name, func(t *testing.T) {
				resp := tc.response
				if resp == "" {
					resp = okResponse
				}
				app.set(tc.name, resp)
				wantRes := tc.wantRes
				if tc.response == "" {
					wantRes = okPairs
				}
				raw := rawRequest(t, c.FEAddr(), fmt.Sprintf(tc.request, "/case/"+tc.name))
				require.True(t, strings.HasPrefix(raw, "HTTP/1.1 200 "), "HAProxy's answer:\n%s", raw)
				require.Contains(t, raw, fmt.Sprintf("\r\nx-counts: %d %d none\r\n", len(tc.wantReq), len(wantRes)),
					"the handler's counts reached HAProxy; answer:\n%s", raw)

				mu.Lock()
				r := got[tc.name]
				mu.Unlock()
				require.NotNil(t, r, "the agent saw case %q", tc.name)
				requirePairs(t, tc.wantReq, r.req)
				requirePairs(t, wantRes, r.res)

				for dir, block := range map[string][]byte{"req": r.req, "res": r.res} {
					file := filepath.Join(string(v), tc.name+"-"+dir+".hex")
					if update {
						require.NoError(t, os.MkdirAll(filepath.Join(hdrsDir, string(v)), 0o755))
						require.NoError(t, os.WriteFile(filepath.Join(hdrsDir, file), []byte(hex.EncodeToString(block)+"\n"), 0o644))
						manifest.add(file, version, v, tc, dir, block)
						continue
					}
					stored, err := os.ReadFile(filepath.Join(hdrsDir, file))
					require.NoError(t, err, "the capture %s (SPOE_UPDATE_HDRSBIN=1 writes it)", file)
					require.Equal(t, strings.TrimSpace(string(stored)), hex.EncodeToString(block),
						"HAProxy %s sent another block than the one captured in %s", v, file)
				}
			})
		}
		ta.requireNoProblems(t)
	})
	if update && !t.Failed() {
		manifest.write(t)
	}
}

// requirePairs decodes block with codec.Headers and checks it holds want,
// in order, and that the lookups agree.
func requirePairs(t *testing.T, want []pair, block []byte) {
	t.Helper()
	h := codec.Headers(block)
	require.NoError(t, h.Validate())
	got := []pair{}
	it := h.Iter()
	for it.Next() {
		got = append(got, pair{string(it.Name()), string(it.Value())})
	}
	require.NoError(t, it.Err())
	require.Equal(t, want, got)
	for _, p := range want {
		v, ok := h.Get(strings.ToUpper(p.Name))
		require.True(t, ok, p.Name)
		first := ""
		for _, q := range want {
			if q.Name == p.Name {
				first = q.Value
				break
			}
		}
		require.Equal(t, first, string(v), "Get(%q) returns the first %s", strings.ToUpper(p.Name), p.Name)
	}
}

// rawApp is the application behind HAProxy: it reads each request and
// writes the raw response set for its case (the third path segment).
type rawApp struct {
	addr string
	mu   sync.Mutex
	resp map[string]string
}

func startRawApp(t *testing.T) *rawApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	app := &rawApp{addr: l.Addr().String(), resp: map[string]string{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(requestTimeout))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				parts := strings.Split(req.URL.Path, "/")
				app.mu.Lock()
				resp, ok := app.resp[parts[len(parts)-1]]
				app.mu.Unlock()
				if !ok {
					resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
				}
				_, _ = io.WriteString(c, resp)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	return app
}

func (a *rawApp) set(name, resp string) {
	a.mu.Lock()
	a.resp[name] = resp
	a.mu.Unlock()
}

// rawRequest sends req on a new connection to addr and returns everything
// the server answered until it closed the connection.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(requestTimeout)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	require.NoError(t, err, "answer so far: %q", b)
	return string(b)
}

// haproxyVersion returns the exact version "bin -v" prints.
func haproxyVersion(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`HA-?Proxy version (\S+)`).FindStringSubmatch(string(out))
	require.NotNil(t, m, "%s", out)
	return m[1]
}

// hdrsManifest is testdata/hdrsbin/manifest.json.
type hdrsManifest struct {
	mu     sync.Mutex
	Blocks []hdrsEntry `json:"blocks"`
}

// hdrsEntry describes one captured block.
type hdrsEntry struct {
	File           string          `json:"file"`
	HAProxyVersion string          `json:"haproxy_version"`
	HAProxyBranch  string          `json:"haproxy_branch"`
	Case           string          `json:"case"`
	Fetch          string          `json:"fetch"`
	Trigger        string          `json:"trigger"`
	Length         int             `json:"length"`
	Headers        []hdrsEntryPair `json:"headers"`
}

// hdrsEntryPair is one decoded header: its value as text when it is valid
// UTF-8 without control characters, else in hex.
type hdrsEntryPair struct {
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	ValueHex string `json:"value_hex,omitempty"`
}

func (m *hdrsManifest) add(file, version string, v haproxytest.Version, tc hdrsCase, dir string, block []byte) {
	e := hdrsEntry{File: file, HAProxyVersion: version, HAProxyBranch: string(v), Case: tc.name, Length: len(block), Headers: []hdrsEntryPair{}}
	if dir == "req" {
		e.Fetch = "req.hdrs_bin"
		e.Trigger = fmt.Sprintf(tc.request, "/case/"+tc.name)
	} else {
		e.Fetch = "res.hdrs_bin"
		e.Trigger = tc.response
		if e.Trigger == "" {
			e.Trigger = okResponse
		}
	}
	it := codec.Headers(block).Iter()
	for it.Next() {
		p := hdrsEntryPair{Name: string(it.Name())}
		if val := it.Value(); utf8.Valid(val) && !strings.ContainsFunc(string(val), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			p.Value = string(val)
		} else {
			p.ValueHex = hex.EncodeToString(val)
		}
		e.Headers = append(e.Headers, p)
	}
	m.mu.Lock()
	m.Blocks = append(m.Blocks, e)
	m.mu.Unlock()
}

func (m *hdrsManifest) write(t *testing.T) {
	sort.Slice(m.Blocks, func(i, j int) bool { return m.Blocks[i].File < m.Blocks[j].File })
	b, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(hdrsDir, "manifest.json"), append(b, '\n'), 0o644))
}
