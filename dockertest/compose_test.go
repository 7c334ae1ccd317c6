package dockertest

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of the compose specification docker/compose.yaml
// uses. Decoding is strict: a key outside this model (a typo, or a new key
// this test does not check yet) fails TestCompose.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]struct{}       `yaml:"volumes"`
}

type composeService struct {
	Build       *composeBuild                `yaml:"build"`
	Image       string                       `yaml:"image"`
	Profiles    []string                     `yaml:"profiles"`
	Environment map[string]string            `yaml:"environment"`
	Healthcheck *composeHealthcheck          `yaml:"healthcheck"`
	DependsOn   map[string]composeDependency `yaml:"depends_on"`
	Volumes     []string                     `yaml:"volumes"`
	Ports       []string                     `yaml:"ports"`
	Command     []string                     `yaml:"command"`
	Restart     string                       `yaml:"restart"`
	// StopGracePeriod is how long compose waits after SIGTERM before
	// SIGKILL.
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
	Target     string `yaml:"target"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

// interpolation matches compose's ${VAR}, ${VAR:-default} and ${VAR-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)((:?-)([^}]*))?\}`)

// withVars replaces every interpolation by its value in vars, or by its
// default when vars has none, as compose does with those variables set.
func withVars(s string, vars map[string]string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		g := interpolation.FindStringSubmatch(m)
		if v, ok := vars[g[1]]; ok {
			return v
		}
		return g[4]
	})
}

// loadCompose parses docker/compose.yaml and resolves its interpolations to
// their defaults.
func loadCompose(t testing.TB) *composeFile { return loadComposeWith(t, nil) }

// loadComposeWith parses docker/compose.yaml with the variables of vars
// set.
func loadComposeWith(t testing.TB, vars map[string]string) *composeFile {
	t.Helper()
	raw := readFile(t, dockerDir(t, "compose.yaml"))
	dec := yaml.NewDecoder(strings.NewReader(withVars(raw, vars)))
	dec.KnownFields(true)
	var c composeFile
	require.NoError(t, dec.Decode(&c), "docker/compose.yaml")
	return &c
}

// hostPort splits "host:port" and checks both parts are there.
func hostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, "address %q", addr)
	require.NotEmpty(t, p, "address %q", addr)
	return h, p
}

// dockerfileStages returns the stage names of docker/Dockerfile, in order.
func dockerfileStages(t testing.TB) []string {
	t.Helper()
	var stages []string
	for _, m := range regexp.MustCompile(`(?im)^FROM\s+\S+\s+AS\s+(\S+)\s*$`).FindAllStringSubmatch(readFile(t, dockerDir(t, "Dockerfile")), -1) {
		stages = append(stages, m[1])
	}
	return stages
}

// presetDefaults returns the presetenv defaults of an HAProxy configuration.
func presetDefaults(t testing.TB, cfg string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, g := range regexp.MustCompile(`(?m)^\s*presetenv\s+(\S+)\s+(\S+)`).FindAllStringSubmatch(cfg, -1) {
		m[g[1]] = g[2]
	}
	return m
}

// envRefs returns the environment variables a configuration expands.
func envRefs(text string) []string {
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(text, -1) {
		seen[m[1]] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestCompose checks docker/compose.yaml: its services, how they fit
// together, and that they fit the Dockerfile and the HAProxy configurations.
func TestCompose(t *testing.T) {
	raw := readFile(t, dockerDir(t, "compose.yaml"))

	t.Run("every interpolation has a default", func(t *testing.T) {
		refs := interpolation.FindAllStringSubmatch(raw, -1)
		require.NotEmpty(t, refs)
		for _, m := range refs {
			require.NotEmpty(t, m[3], "%s has no default: `docker compose up` must work without a .env file", m[0])
		}
		// No $VAR without braces (compose would expand it too).
		require.NotRegexp(t, `\$[A-Za-z_]`, interpolation.ReplaceAllString(raw, ""))
	})

	c := loadCompose(t)
	require.NotEmpty(t, c.Name)
	stages := dockerfileStages(t)

	t.Run("default services", func(t *testing.T) {
		var defaults []string
		for name, s := range c.Services {
			if len(s.Profiles) == 0 {
				defaults = append(defaults, name)
			}
		}
		sort.Strings(defaults)
		require.Equal(t, []string{"agent", "certs", "haproxy", "whoami"}, defaults)
	})

	// The certificates: generated by the certs service into the volume
	// "certs", mounted read-only where each service reads them.
	certs := c.Services["certs"]
	t.Run("certs", func(t *testing.T) {
		requireBuild(t, certs.Build, "certs", stages)
		require.NotEmpty(t, certs.Image)
		require.Contains(t, c.Volumes, "certs", "a named volume keeps the certificates across restarts")
		require.Equal(t, []string{"certs:" + certs.Environment["CERTS_DIR"]}, certs.Volumes)
		require.Equal(t, "no", certs.Restart, "it runs once")
		df := readFile(t, dockerDir(t, "Dockerfile"))
		require.Contains(t, df, "USER "+certs.Environment["AGENT_UID"]+":", "AGENT_UID must be the agent image's user")
		require.Equal(t, "99", certs.Environment["HAPROXY_UID"], "the official HAProxy image runs as uid 99")
		script := readFile(t, dockerDir(t, "gen-dev-certs.sh"))
		for k := range certs.Environment {
			require.Contains(t, script, "${"+k, "gen-dev-certs.sh does not read %s", k)
		}
		require.NotRegexp(t, `(?m)^\s*[^#]*ca\.key[^\n]*\$dir`, script, "the CA key must not be kept")
	})

	agent := c.Services["agent"]
	_, agentPort := hostPort(t, agent.Environment["SPOE_AGENT_ADDR"])

	t.Run("agent", func(t *testing.T) {
		require.NotNil(t, agent.Build)
		requireBuild(t, agent.Build, "agent", stages)
		require.Equal(t, "agent", stages[len(stages)-1], "the agent must be the Dockerfile's default (last) stage")
		require.NotEmpty(t, agent.Image)

		host, _ := hostPort(t, agent.Environment["SPOE_AGENT_ADDR"])
		require.Equal(t, "0.0.0.0", host, "the agent must listen on every interface of its container")
		require.Equal(t, "service_completed_successfully", agent.DependsOn["certs"].Condition)
		require.Equal(t, []string{"certs:/certs:ro"}, agent.Volumes)
		for _, k := range []string{"SPOE_TLS_CERT", "SPOE_TLS_KEY", "SPOE_TLS_CLIENT_CA"} {
			require.True(t, strings.HasPrefix(agent.Environment[k], "/certs/"), "%s must be a file of the certs volume", k)
		}
		require.NotContains(t, agent.Ports, "12345", "the agent's port is not published")
		// Only its metrics port is, on an ephemeral host port per replica
		// (checked below).
		example := readFile(t, filepath.Join(repoRoot(t), "cmd", "example", "main.go"))
		for k := range agent.Environment {
			require.Contains(t, example, `"`+k+`"`, "cmd/example does not read %s", k)
		}

		hc := agent.Healthcheck
		require.NotNil(t, hc, "the agent needs a healthcheck: haproxy waits for it")
		require.Equal(t, "CMD", hc.Test[0], "exec form: the agent image has no need for a shell")
		args := hc.Test[1:]
		require.GreaterOrEqual(t, len(args), 3)
		require.Equal(t, []string{"spoe-forge", "healthcheck"}, args[:2])
		require.Contains(t, args, "--quiet")
		requireCheckPort(t, args, agentPort)
		requireCLIAccepts(t, args)
		for _, flag := range []string{"--ca", "--cert"} {
			i := slices.Index(args, flag)
			require.Positive(t, i, "the agent requires client certificates: its health check needs %s", flag)
			require.True(t, strings.HasPrefix(args[i+1], "/certs/"))
		}
		for _, d := range []string{hc.Interval, hc.Timeout, hc.StartPeriod} {
			_, err := time.ParseDuration(d)
			require.NoError(t, err)
		}
		require.Positive(t, hc.Retries)
		// The check's port and the listen address come from one variable.
		rawAgent := raw[strings.Index(raw, "\n  agent:"):strings.Index(raw, "\n  # The application")]
		require.Contains(t, rawAgent, `SPOE_AGENT_ADDR: "0.0.0.0:${AGENT_PORT:-`)
		require.Contains(t, rawAgent, `"--port", "${AGENT_PORT:-`)
		// SIGTERM: lame duck, then drain; only then may compose kill it.
		grace, err := time.ParseDuration(agent.StopGracePeriod)
		require.NoError(t, err, "the agent needs a stop_grace_period")
		lame, err := time.ParseDuration(agent.Environment["SPOE_LAME_DUCK"])
		require.NoError(t, err)
		drain, err := time.ParseDuration(agent.Environment["SPOE_SHUTDOWN_TIMEOUT"])
		require.NoError(t, err)
		require.Greater(t, grace, lame+drain, "stop_grace_period must exceed the lame-duck period plus the shutdown timeout")
		_, metricsPort := hostPort(t, agent.Environment["SPOE_METRICS_ADDR"])
		require.Equal(t, []string{metricsPort}, agent.Ports, "the metrics port is published (on an ephemeral host port, so that --scale works)")
		if i := slices.Index(args, "--timeout"); i >= 0 {
			cli, err := time.ParseDuration(args[i+1])
			require.NoError(t, err)
			limit, _ := time.ParseDuration(hc.Timeout)
			require.Less(t, cli, limit, "the CLI must give up before Docker kills it")
		}
	})

	t.Run("Dockerfile", func(t *testing.T) {
		df := readFile(t, dockerDir(t, "Dockerfile"))
		m := regexp.MustCompile(`(?s)\nHEALTHCHECK[^\n]*?(?:\\\n[^\n]*?)*CMD (\[[^\n]*\])`).FindStringSubmatch(df)
		require.NotNil(t, m, "the agent stage needs a HEALTHCHECK")
		var test []string
		require.NoError(t, json.Unmarshal([]byte(m[1]), &test))
		require.Equal(t, []string{"spoe-forge", "healthcheck"}, test[:2])
		require.Contains(t, test, "--quiet")
		requireCheckPort(t, test, agentPort)
		requireCLIAccepts(t, test)
		require.Contains(t, df, "SPOE_AGENT_ADDR=0.0.0.0:"+agentPort)
		require.Contains(t, stages, "bench")
		require.NotRegexp(t, `GOPROXY=\S`, df, "rely on Go's default GOPROXY")
		for _, m := range regexp.MustCompile(`(?m)^ARG \w+_IMAGE=(\S+)$`).FindAllStringSubmatch(df, -1) {
			requireNoRegistryHost(t, m[1])
		}
	})

	t.Run("Dockerfile.dockerignore keeps what the build needs", func(t *testing.T) {
		requireBuildContext(t)
	})

	haproxyCases := []struct {
		service, image, cfg, spoe string
		profile                   string
	}{
		{"haproxy", "haproxy:3.2", "haproxy-3.2.cfg", "spoe-3.2.conf", ""},
		{"haproxy-legacy", "haproxy:2.6", "haproxy-2.6.cfg", "spoe-2.6.conf", "legacy"},
	}
	for _, hc := range haproxyCases {
		t.Run(hc.service, func(t *testing.T) {
			s, ok := c.Services[hc.service]
			require.True(t, ok, "service %s", hc.service)
			if hc.profile == "" {
				require.Empty(t, s.Profiles)
			} else {
				require.Equal(t, []string{hc.profile}, s.Profiles)
			}
			require.Equal(t, hc.image, s.Image)
			require.Equal(t, "service_healthy", s.DependsOn["agent"].Condition)
			require.Contains(t, s.DependsOn, "whoami")

			cfg := readFile(t, dockerDir(t, hc.cfg))
			defaults := presetDefaults(t, cfg)
			require.Equal(t, hc.spoe, defaults["SPOE_CONF"], "%s must default to the SPOE file mounted beside it", hc.cfg)
			require.ElementsMatch(t, []string{
				"./" + hc.cfg + ":/usr/local/etc/haproxy/haproxy.cfg:ro",
				"./" + hc.spoe + ":/usr/local/etc/haproxy/" + hc.spoe + ":ro",
				"certs:/usr/local/etc/haproxy/certs:ro",
			}, s.Volumes, "the official image reads /usr/local/etc/haproxy/haproxy.cfg")
			for _, k := range []string{"AGENT_CA", "AGENT_CLIENT_CERT"} {
				require.True(t, strings.HasPrefix(s.Environment[k], "/usr/local/etc/haproxy/certs/"), "%s must be a file of the certs volume", k)
			}
			require.Equal(t, certs.Environment["AGENT_NAME"], s.Environment["AGENT_SERVER_NAME"], "the name in the agent's certificate")

			refs := envRefs(cfg + readFile(t, dockerDir(t, hc.spoe)))
			for k := range s.Environment {
				require.Contains(t, refs, k, "%s sets %s, which %s does not read", hc.service, k, hc.cfg)
			}
			require.Equal(t, "agent:"+agentPort, s.Environment["AGENT_ADDR"])
			require.Equal(t, "whoami:80", s.Environment["BACKEND_ADDR"], "traefik/whoami listens on port 80")
			require.Contains(t, s.Environment, "AGENT_CHECK_INTER")
			_, err := time.ParseDuration(s.Environment["AGENT_CHECK_INTER"])
			require.NoError(t, err)
			bindHost, bindPort := hostPort(t, s.Environment["FRONTEND_BIND"])
			require.Empty(t, bindHost, "HAProxy must listen on every interface of its container")
			require.Len(t, s.Ports, 1)
			published := strings.Split(s.Ports[0], ":")
			require.Len(t, published, 2)
			require.Equal(t, bindPort, published[1], "the published port must be the one HAProxy binds")
			require.NotContains(t, s.Environment, "TRUSTED_PROXIES", "clients reach HAProxy directly: X-Forwarded-For must not be trusted")
		})
	}

	t.Run("whoami", func(t *testing.T) {
		s := c.Services["whoami"]
		require.Equal(t, "traefik/whoami", s.Image)
	})

	t.Run("perf profile", func(t *testing.T) {
		var perf []string
		for name, s := range c.Services {
			if slices.Contains(s.Profiles, "perf") {
				require.Equal(t, []string{"perf"}, s.Profiles, name)
				perf = append(perf, name)
			}
		}
		sort.Strings(perf)
		require.Equal(t, []string{"bench", "loadgen"}, perf)

		bench := c.Services["bench"]
		requireBuild(t, bench.Build, "bench", stages)
		require.Contains(t, bench.Command, "agent:"+agentPort, "bench loads the agent directly")
		require.Equal(t, "service_healthy", bench.DependsOn["agent"].Condition)
		require.Equal(t, []string{"certs:/certs:ro"}, bench.Volumes)
		benchMain := readFile(t, filepath.Join(repoRoot(t), "cmd", "bench", "main.go"))
		for _, a := range bench.Command {
			if name, ok := strings.CutPrefix(a, "-"); ok {
				require.Contains(t, benchMain, `"`+name+`"`, "cmd/bench has no flag -%s", name)
			}
		}

		loadgen := c.Services["loadgen"]
		_, bindPort := hostPort(t, c.Services["haproxy"].Environment["FRONTEND_BIND"])
		require.Contains(t, loadgen.Command, "http://haproxy:"+bindPort+"/hello", "loadgen goes through HAProxy")
		require.Contains(t, loadgen.DependsOn, "haproxy")
	})

	t.Run("images", func(t *testing.T) {
		for name, s := range c.Services {
			require.NotEmpty(t, s.Image, name)
			requireNoRegistryHost(t, s.Image)
			for dep := range s.DependsOn {
				require.Contains(t, c.Services, dep, "%s depends on an unknown service", name)
			}
		}
	})
}

// requireBuild checks a service's build section against docker/Dockerfile.
func requireBuild(t *testing.T, b *composeBuild, target string, stages []string) {
	t.Helper()
	require.NotNil(t, b)
	root := filepath.Join(dockerDir(t), b.Context)
	require.FileExists(t, filepath.Join(root, "go.mod"), "the build context must be the repository root")
	require.Equal(t, filepath.Join(dockerDir(t), "Dockerfile"), filepath.Join(root, b.Dockerfile))
	require.Equal(t, target, b.Target)
	require.Contains(t, stages, target)
}

// requireCheckPort checks that a healthcheck command targets the agent's port.
func requireCheckPort(t *testing.T, args []string, port string) {
	t.Helper()
	if i := slices.Index(args, "--port"); i >= 0 {
		require.Equal(t, port, args[i+1])
		return
	}
	require.Equal(t, "12345", port, "without --port, spoe-forge healthcheck checks port 12345")
}

// requireCLIAccepts checks that spoe-forge parses a healthcheck command line:
// with --help appended, it exits 0 only if every flag before it is valid.
func requireCLIAccepts(t *testing.T, args []string) {
	t.Helper()
	_, spoeForge := binaries(t)
	code, out := runStatus(t, 10*time.Second, os.Environ(), "", spoeForge, append(slices.Clone(args[1:]), "--help")...)
	require.Equal(t, 0, code, "spoe-forge %s: %s", strings.Join(args[1:], " "), out)
}

// requireNoRegistryHost checks that an image reference names no registry
// host: images come from the default registry or from one the user names
// through the *_IMAGE variables.
func requireNoRegistryHost(t *testing.T, image string) {
	t.Helper()
	first, _, found := strings.Cut(image, "/")
	if !found {
		return
	}
	require.False(t, strings.ContainsAny(first, ".:") || first == "localhost", "image %q names a registry host", image)
}

// requireBuildContext checks that docker/Dockerfile.dockerignore lets through
// every folder of the module that the images' packages are built from.
func requireBuildContext(t *testing.T) {
	t.Helper()
	ignore := readFile(t, dockerDir(t, "Dockerfile.dockerignore"))
	lines := strings.Split(ignore, "\n")
	require.Contains(t, lines, "**", "the context is an allowlist")
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/example", "./cmd/spoe-forge")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		require.NoError(t, err)
		if strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		top := strings.Split(rel, string(filepath.Separator))[0]
		require.Contains(t, lines, "!"+top+"/", "the build needs %s", rel)
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		require.Contains(t, lines, "!"+f)
	}
}
