package dockertest

import (
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// configVersions lists the HAProxy branches that must load each HAProxy
// configuration of docker/. A new configuration must be added here.
var configVersions = map[string][]haproxytest.Version{
	// "mode spop": 3.1+ only; 3.4 runs the 3.2 file unchanged.
	"haproxy-3.2.cfg": {haproxytest.V32, haproxytest.V34},
	// "mode tcp": the legacy engine; 3.1+ converts it to "mode spop".
	"haproxy-2.6.cfg": {haproxytest.V26, haproxytest.V30, haproxytest.V32, haproxytest.V34},
}

// spoeConfOf maps an HAProxy configuration to the SPOE file beside it.
func spoeConfOf(cfg string) string {
	return "spoe-" + strings.TrimSuffix(strings.TrimPrefix(cfg, "haproxy-"), ".cfg") + ".conf"
}

func configFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(dockerDir(t, "*.cfg"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	return names
}

// TestConfigsLoad runs "haproxy -c" on every HAProxy configuration of docker/,
// in place, with each binary it is written for, under five environments:
// none of its variables set (the presetenv defaults; HAProxy is started from
// another folder, so the relative SPOE_CONF must resolve next to the file),
// TRUSTED_PROXIES set, the environment docker/compose.yaml gives it (mutual
// TLS with the certificates of docker/gen-dev-certs.sh), mutual TLS alone,
// and an agent on a unix socket.
func TestConfigsLoad(t *testing.T) {
	compose := loadCompose(t)
	for _, name := range configFiles(t) {
		versions, ok := configVersions[name]
		require.True(t, ok, "docker/%s: add it to configVersions with the HAProxy versions it is for", name)
		composeEnv := composeEnvFor(t, compose, name)
		for i, kv := range composeEnv {
			// The certificates are mounted in the containers: here they
			// are those gen-dev-certs.sh makes.
			k, v, _ := strings.Cut(kv, "=")
			composeEnv[i] = k + "=" + hostPath(t, v)
		}
		certs := devCerts(t)
		for _, v := range versions {
			t.Run(name+"/"+string(v), func(t *testing.T) {
				bin := haproxytest.Binary(t, v)
				scenarios := []struct {
					name     string
					env      []string
					tolerate string // the only warnings allowed
				}{
					{"defaults", cleanEnv(), ""},
					{"trusted proxies", cleanEnv("TRUSTED_PROXIES=127.0.0.0/8 10.0.0.0/8 ::1"), ""},
					// Outside a container, the service names do not
					// resolve; "init-addr last,libc,none" lets HAProxy
					// start anyway.
					{"compose environment", cleanEnv(composeEnv...), "could not resolve address"},
					{"mutual TLS", cleanEnv("AGENT_CA="+filepath.Join(certs, "ca.crt"), "AGENT_CLIENT_CERT="+filepath.Join(certs, "haproxy.pem")), ""},
					{"unix socket", cleanEnv("AGENT_SOCKET=unix@/run/spoa/agent.sock"), ""},
				}
				for _, s := range scenarios {
					t.Run(s.name, func(t *testing.T) {
						code, out := runStatus(t, checkTimeout, s.env, t.TempDir(), bin, "-c", "-f", dockerDir(t, name))
						require.Equal(t, 0, code, "haproxy -c:\n%s", out)
						for _, line := range haproxytest.Warnings(out) {
							require.True(t, s.tolerate != "" && strings.Contains(line, s.tolerate), "unexpected warning: %s\nfull output:\n%s", line, out)
						}
					})
				}
			})
		}
	}
}

// composeEnvFor returns, as K=V, the environment compose.yaml gives to the
// service that mounts cfg.
func composeEnvFor(t *testing.T, c *composeFile, cfg string) []string {
	t.Helper()
	for _, s := range c.Services {
		for _, vol := range s.Volumes {
			if strings.HasPrefix(vol, "./"+cfg+":") {
				var env []string
				for k, v := range s.Environment {
					env = append(env, k+"="+v)
				}
				sort.Strings(env)
				return env
			}
		}
	}
	t.Fatalf("no service of docker/compose.yaml mounts docker/%s", cfg)
	return nil
}

// TestLegacyRejectsModeSpop shows why there are two configurations: 2.6 and
// 3.0 refuse the "mode spop" agent backend of haproxy-3.2.cfg.
func TestLegacyRejectsModeSpop(t *testing.T) {
	for _, v := range []haproxytest.Version{haproxytest.V26, haproxytest.V30} {
		t.Run(string(v), func(t *testing.T) {
			bin := haproxytest.Binary(t, v)
			code, out := runStatus(t, checkTimeout, cleanEnv(), t.TempDir(), bin, "-c", "-f", dockerDir(t, "haproxy-3.2.cfg"))
			require.NotEqual(t, 0, code, out)
			require.Contains(t, out, "unknown proxy mode 'spop'")
		})
	}
}

// TestConfigEnvironment checks the variables of the HAProxy configurations:
// each has a presetenv default (TRUSTED_PROXIES and AGENT_CA are only read
// when defined),
// the defaults match cmd/example and spoe-forge healthcheck, and each is
// documented in the file's header and in docker/README.md.
func TestConfigEnvironment(t *testing.T) {
	readme := readFile(t, dockerDir(t, "README.md"))
	example := readFile(t, filepath.Join(repoRoot(t), "cmd", "example", "main.go"))
	_, spoeForge := binaries(t)
	code, help := runStatus(t, checkTimeout, cleanEnv(), "", spoeForge, "healthcheck", "--help")
	require.Equal(t, 0, code, help)
	for _, name := range configFiles(t) {
		t.Run(name, func(t *testing.T) {
			cfg := readFile(t, dockerDir(t, name))
			spoe := spoeConfOf(name)
			refs := envRefs(cfg + readFile(t, dockerDir(t, spoe)))
			require.ElementsMatch(t, configEnv, refs, "configEnv (helpers_test.go) must list the variables the configurations read")

			defaults := presetDefaults(t, cfg)
			for _, k := range refs {
				if slices.Contains(optionalEnv, k) {
					continue
				}
				require.Contains(t, defaults, k, "%s has no presetenv default", k)
				require.Regexp(t, `(?m)^#\s+`+k+`\s`, cfg, "the header of %s must document %s", name, k)
				require.Contains(t, readme, "`"+k+"`", "docker/README.md must document %s", k)
			}
			require.Equal(t, spoe, defaults["SPOE_CONF"])
			require.Regexp(t, `(?m)^\s*default-path config\s*$`, cfg, "SPOE_CONF is relative to the configuration file")
			require.Equal(t, "127.0.0.1:12345", defaults["AGENT_ADDR"])
			require.Contains(t, example, `"127.0.0.1:12345"`, "cmd/example's default address")
			require.Contains(t, help, "(default 127.0.0.1)", "spoe-forge healthcheck's default host")
			require.Contains(t, help, "(default 12345)", "spoe-forge healthcheck's default port")

			// The optional variables are read only inside ".if defined(NAME)",
			// and documented.
			for _, k := range optionalEnv {
				outside := regexp.MustCompile(`(?s)\n\.(if|elif) defined\(`+k+`\)\n.*?\n\.(elif|else|endif)`).ReplaceAllString(cfg, "\n.")
				require.NotContains(t, outside, "${"+k, "%s must be optional", k)
				require.Contains(t, cfg, "${"+k)
				require.Regexp(t, `(?m)^#\s+`+k+`\s`, cfg, "the header of %s must document %s", name, k)
				require.Contains(t, readme, "`"+k+"`")
			}
		})
	}
}
