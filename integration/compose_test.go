package integration

// Static checks of the container files: Dockerfile, docker-compose.yml,
// .dockerignore and deploy/kratos-render.sh. Nothing here needs Docker; the
// files are parsed, the Kratos render script is run against the committed
// configs/kratos with a stand-in kratos, and the gateway's environment from
// the compose file goes through `gateway config check`.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Service names the stack is wired with: the gateway's env and Kratos's
// rendered config name them as hosts.
const (
	svcMailpit       = "mailpit"
	svcKratosMigrate = "kratos-migrate"
	svcKratos        = "kratos"
	svcGateway       = "gateway"
)

// The Kratos config's placeholders (configs/kratos/kratos.yml's header).
const (
	kratosPlaceholderURL = "http://127.0.0.1:8080"
	kratosPlaceholderKey = "change-me-to-the-gateway-webhook-api-key"
)

// The secrets compose must refuse to start without.
var composeSecrets = []string{"GATEWAY_WEBHOOK__API_KEY", "GATEWAY_SECRETS__CIPHER"}

// composeVars stand in for the operator's shell when the compose file is
// interpolated: hex, as `openssl rand -hex 24` gives.
func composeVars() map[string]string {
	return map[string]string{
		"GATEWAY_WEBHOOK__API_KEY": "compose-test-key-" + randomHex(12),
		"GATEWAY_SECRETS__CIPHER":  "compose-test-cipher-" + randomHex(16),
	}
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t, composeVars())

	if _, ok := c.raw["version"]; ok {
		t.Errorf("docker-compose.yml: drop the top-level `version:` key (obsolete in the Compose spec)")
	}
	// Kratos's image follows KRATOS_VERSION, v26.2.0 (the recommended one)
	// when unset; both Kratos services always run the same one.
	want := map[string]string{
		svcMailpit:       "axllent/mailpit:" + mailpitVersion,
		svcKratosMigrate: "oryd/kratos:" + kratosRecommended,
		svcKratos:        "oryd/kratos:" + kratosRecommended,
	}
	for _, name := range []string{svcMailpit, svcKratosMigrate, svcKratos, svcGateway} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml: service %q is missing (have %v)", name, c.serviceNames())
			continue
		}
		if img, ok := want[name]; ok && s.Image != img {
			t.Errorf("docker-compose.yml: service %s runs image %q, want %q (a version the integration tests run, stack_test.go)", name, s.Image, img)
		}
	}
	for _, v := range []string{kratosV1, kratosV26} {
		vars := composeVars()
		vars["KRATOS_VERSION"] = v
		cv := loadCompose(t, vars)
		for _, name := range []string{svcKratosMigrate, svcKratos} {
			if img := cv.Services[name].Image; img != "oryd/kratos:"+v {
				t.Errorf("docker-compose.yml with KRATOS_VERSION=%s: service %s runs image %q, want oryd/kratos:%s", v, name, img, v)
			}
		}
	}
	if t.Failed() {
		return
	}

	gw := c.Services[svcGateway]
	if gw.Build.Context != "." {
		t.Errorf("docker-compose.yml: gateway must be built from this checkout (build.context \".\"), got %q", gw.Build.Context)
	}
	if df := gw.Build.dockerfile(); df != "Dockerfile" {
		t.Errorf("docker-compose.yml: gateway build.dockerfile is %q, want \"Dockerfile\"", df)
	}
	for _, dep := range []string{svcKratos, svcMailpit} {
		if _, ok := gw.DependsOn[dep]; !ok {
			t.Errorf("docker-compose.yml: gateway must depend_on %s (has %v)", dep, composeKeys(gw.DependsOn))
		}
	}
	if cond := c.Services[svcKratos].DependsOn[svcKratosMigrate]; cond != "service_completed_successfully" {
		t.Errorf("docker-compose.yml: kratos must depend_on kratos-migrate with condition service_completed_successfully (the schema must exist before Kratos serves), got %q", cond)
	}
	if r := c.Services[svcKratosMigrate].Restart; r != "on-failure" {
		t.Errorf("docker-compose.yml: kratos-migrate restart is %q, want on-failure (a finished migration must not run again)", r)
	}

	// The Kratos commands, as scripts/stack.sh runs them.
	migrate := c.Services[svcKratosMigrate].Command
	if !composeHasPrefix(migrate, "migrate", "sql") || !slices.Contains(migrate, "-e") || !slices.Contains(migrate, "--yes") || composeFlag(migrate, "-c") == "" {
		t.Errorf("docker-compose.yml: kratos-migrate command is %q, want migrate sql -e --yes -c <kratos.yml>", migrate)
	}
	serve := c.Services[svcKratos].Command
	if !composeHasPrefix(serve, "serve") || !slices.Contains(serve, "--dev") || !slices.Contains(serve, "--watch-courier") || composeFlag(serve, "-c") == "" {
		t.Errorf("docker-compose.yml: kratos command is %q, want serve -c <kratos.yml> --dev --watch-courier (the courier must run to call the gateway)", serve)
	}

	// One sqlite database on one named volume, shared by migrate and serve.
	var volumes []string
	for _, name := range []string{svcKratosMigrate, svcKratos} {
		s := c.Services[name]
		dsn := s.Environment["DSN"]
		file, ok := strings.CutPrefix(strings.SplitN(dsn, "?", 2)[0], "sqlite://")
		if !ok || !path.IsAbs(file) {
			t.Errorf("docker-compose.yml: %s DSN is %q, want sqlite:///<absolute path>?_fk=true&mode=rwc", name, dsn)
			continue
		}
		if !strings.Contains(dsn, "_fk=true") || !strings.Contains(dsn, "mode=rwc") {
			t.Errorf("docker-compose.yml: %s DSN %q lacks _fk=true and mode=rwc", name, dsn)
		}
		m, ok := s.mountOf(file)
		if !ok || m.Type != "volume" {
			t.Errorf("docker-compose.yml: %s keeps its sqlite database %s outside a named volume (mount: %v); migrate and serve must share it", name, file, m)
			continue
		}
		if _, declared := c.Volumes[m.Source]; !declared {
			t.Errorf("docker-compose.yml: %s uses volume %q, which the top-level volumes: does not declare", name, m.Source)
		}
		volumes = append(volumes, m.Source+":"+file)
	}
	if len(volumes) == 2 && volumes[0] != volumes[1] {
		t.Errorf("docker-compose.yml: kratos-migrate and kratos use different databases (%s vs %s): Kratos would serve an unmigrated one", volumes[0], volumes[1])
	}
}

func TestComposeMounts(t *testing.T) {
	c := loadCompose(t, composeVars())
	root := composeRepoRoot(t)

	for _, name := range c.serviceNames() {
		for _, m := range c.Services[name].Volumes {
			switch m.Type {
			case "bind":
				host := filepath.Join(root, filepath.FromSlash(m.Source))
				if rel, err := filepath.Rel(root, host); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(m.Source) {
					t.Errorf("docker-compose.yml: %s bind-mounts %q, which is not a path inside the repository", name, m.Source)
				} else if _, err := os.Stat(host); err != nil {
					t.Errorf("docker-compose.yml: %s bind-mounts %q at %s, but it does not exist in the repository", name, m.Source, m.Target)
				}
			case "volume":
				if _, ok := c.Volumes[m.Source]; !ok {
					t.Errorf("docker-compose.yml: %s mounts volume %q, which the top-level volumes: does not declare", name, m.Source)
				}
			}
		}
	}

	// The Kratos services run the render script over the mounted configs/kratos,
	// into the folder their -c names.
	for _, name := range []string{svcKratosMigrate, svcKratos} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml: service %s is missing", name)
			continue
		}
		r, err := kratosRenderOf(root, name, s)
		if err != nil {
			t.Error(err)
			continue
		}
		cfg := composeFlag(s.Command, "-c")
		if path.Dir(cfg) != r.dst {
			t.Errorf("docker-compose.yml: %s runs Kratos with -c %s, but %s renders the config into %s", name, cfg, r.scriptRel, r.dst)
		} else if _, err := os.Stat(filepath.Join(r.srcHost, path.Base(cfg))); err != nil {
			t.Errorf("docker-compose.yml: %s runs Kratos with -c %s, but configs/kratos has no %s to render it from", name, cfg, path.Base(cfg))
		}
	}

	// The gateway reads the config its command names from the mounted ./configs/gateway.yaml.
	df := loadDockerfile(t)
	gw := c.Services[svcGateway]
	cmd := gw.Command
	if len(cmd) == 0 {
		cmd = df.final().cmd
	}
	cfg := composeFlag(cmd, "--config")
	if cfg == "" {
		t.Fatalf("the gateway's command %q (docker-compose.yml, else the Dockerfile's CMD) names no --config", cmd)
	}
	m, ok := gw.mountOf(cfg)
	if !ok || m.Type != "bind" {
		t.Errorf("docker-compose.yml: the gateway reads %s, which no bind mount of ./configs/gateway.yaml provides (edits would not reach it)", cfg)
	} else {
		host := m.hostPath(root, cfg)
		if want := filepath.Join(root, "configs", "gateway.yaml"); host != want {
			t.Errorf("docker-compose.yml: the gateway's %s comes from %s, want configs/gateway.yaml", cfg, host)
		}
		if !m.ReadOnly {
			t.Errorf("docker-compose.yml: the gateway's config mount %s -> %s must be read-only", m.Source, m.Target)
		}
	}
	if !slices.Contains(df.final().copyDests(), cfg) {
		t.Errorf("Dockerfile: the runtime image does not COPY a config to %s, the path its CMD names (docker run without a mount would fail)", cfg)
	}
}

func TestComposeKratosConfig(t *testing.T) {
	vars := composeVars()
	c := loadCompose(t, vars)
	root := composeRepoRoot(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("the render script needs a POSIX sh: %v", err)
	}
	gatewayURL := "http://" + svcGateway + ":" + c.gatewayListenPort(t, loadDockerfile(t))

	for _, name := range []string{svcKratosMigrate, svcKratos} {
		t.Run(name, func(t *testing.T) {
			s, ok := c.Services[name]
			if !ok {
				t.Fatalf("docker-compose.yml: service %s is missing", name)
			}
			r, err := kratosRenderOf(root, name, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Environment["GATEWAY_WEBHOOK__API_KEY"]; got != vars["GATEWAY_WEBHOOK__API_KEY"] {
				t.Errorf("docker-compose.yml: %s's GATEWAY_WEBHOOK__API_KEY is %q, want the gateway's key from ${GATEWAY_WEBHOOK__API_KEY}", name, got)
			}

			// Run the script as the container would, with the rendered
			// folder in a temp dir and a stand-in kratos that records how
			// it was started.
			tmp := t.TempDir()
			dst := filepath.Join(tmp, "rendered")
			bin := filepath.Join(tmp, "bin")
			record := filepath.Join(tmp, "kratos-args")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			fake := "#!/bin/sh\n{ pwd; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; } > \"$FAKE_KRATOS_RECORD\"\n"
			if err := os.WriteFile(filepath.Join(bin, "kratos"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			args := append(slices.Clone(r.scriptArgs), s.Command...)
			cmd := exec.Command(sh, append([]string{r.scriptHost}, args...)...)
			cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "FAKE_KRATOS_RECORD=" + record}
			for k, v := range s.Environment {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			cmd.Env = append(cmd.Env, "KRATOS_CONFIG_SRC="+r.srcHost, "KRATOS_CONFIG_DIR="+dst)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s (the %s entrypoint) failed with the compose environment: %v\n%s", r.scriptRel, name, err, out)
			}
			raw, err := os.ReadFile(record)
			if err != nil {
				t.Fatalf("%s did not exec kratos: %v", r.scriptRel, err)
			}
			lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			if cwd, _ := filepath.EvalSymlinks(lines[0]); cwd != composeEvalSymlinks(t, dst) {
				t.Errorf("%s runs kratos in %s, want the rendered folder (kratos.yml names file://./identity.schema.json relative to it)", r.scriptRel, lines[0])
			}
			if got := lines[1:]; !slices.Equal(got, s.Command) {
				t.Errorf("%s runs kratos %q, want the compose command %q", r.scriptRel, got, s.Command)
			}

			// What Kratos reads: every file, placeholders gone.
			rendered := map[string]string{}
			entries, err := os.ReadDir(dst)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				b, err := os.ReadFile(filepath.Join(dst, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				rendered[e.Name()] = string(b)
				for _, p := range []string{kratosPlaceholderURL, kratosPlaceholderKey} {
					if strings.Contains(string(b), p) {
						t.Errorf("%s left the placeholder %q in %s", r.scriptRel, p, e.Name())
					}
				}
			}
			src, _ := os.ReadDir(r.srcHost)
			for _, e := range src {
				if _, ok := rendered[e.Name()]; !ok && !e.IsDir() {
					t.Errorf("%s did not copy configs/kratos/%s", r.scriptRel, e.Name())
				}
			}
			yml := rendered["kratos.yml"]
			for _, p := range []string{"/courier", "/hooks/login", "/hooks/settings", "/hooks/password"} {
				if !strings.Contains(yml, gatewayURL+p) {
					t.Errorf("the %s container's kratos.yml does not name %s%s", name, gatewayURL, p)
				}
			}
			for _, ref := range regexp.MustCompile(`file://\./([^\s"']+)`).FindAllStringSubmatch(yml, -1) {
				if _, ok := rendered[ref[1]]; !ok {
					t.Errorf("the %s container's kratos.yml refers to file://./%s, which is not in the rendered folder", name, ref[1])
				}
			}
			checkKratosWiring(t, name, yml, gatewayURL, "Bearer "+vars["GATEWAY_WEBHOOK__API_KEY"])
		})
	}
}

// checkKratosWiring reads the four places Kratos calls the gateway from the
// rendered kratos.yml.
func checkKratosWiring(t *testing.T, name, yml, gatewayURL, bearer string) {
	t.Helper()
	var k map[string]any
	if err := yaml.Unmarshal([]byte(yml), &k); err != nil {
		t.Fatalf("the %s container's kratos.yml is not YAML after rendering: %v", name, err)
	}
	type call struct {
		what string
		cfg  any
		path string
	}
	calls := []call{
		{"courier.http.request_config", composeDig(k, "courier", "http", "request_config"), "/courier"},
		{"selfservice.methods.password.config.migrate_hook.config", composeDig(k, "selfservice", "methods", "password", "config", "migrate_hook", "config"), "/hooks/password"},
	}
	for _, flow := range []string{"login", "settings"} {
		hooks, _ := composeDig(k, "selfservice", "flows", flow, "after", "password", "hooks").([]any)
		found := false
		for _, h := range hooks {
			if composeDig(h, "hook") == "web_hook" {
				calls = append(calls, call{"selfservice.flows." + flow + ".after.password.hooks[web_hook].config", composeDig(h, "config"), "/hooks/" + flow})
				found = true
			}
		}
		if !found {
			t.Errorf("the %s container's kratos.yml has no web_hook after %s with password", name, flow)
		}
	}
	for _, c := range calls {
		if got := composeDig(c.cfg, "url"); got != gatewayURL+c.path {
			t.Errorf("the %s container's kratos.yml: %s.url is %v, want %s%s", name, c.what, got, gatewayURL, c.path)
		}
		if got := composeDig(c.cfg, "auth", "config", "value"); got != bearer {
			t.Errorf("the %s container's kratos.yml: %s.auth.config.value is %q, want \"Bearer \" + the gateway's webhook key", name, c.what, got)
		}
	}
	if got := composeDig(k, "courier", "delivery_strategy"); got != "http" {
		t.Errorf("the %s container's kratos.yml: courier.delivery_strategy is %v, want http", name, got)
	}
}

func TestComposePorts(t *testing.T) {
	c := loadCompose(t, composeVars())
	df := loadDockerfile(t)
	want := map[string][]string{
		svcMailpit:       {"1025", "8025"},
		svcKratosMigrate: nil,
		svcKratos:        {"4433", "4434"},
		svcGateway:       {"4455", "8080"},
	}
	for name, ports := range want {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml: service %s is missing", name)
			continue
		}
		var got []string
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("docker-compose.yml: %s publishes %s on %q; bind it to 127.0.0.1 (\"127.0.0.1:%s:%s\")", name, p.spec, p.HostIP, p.Published, p.Target)
			}
			if p.Published != p.Target {
				t.Errorf("docker-compose.yml: %s publishes container port %s as %s; Kratos's config and the demo URLs expect the same number on 127.0.0.1", name, p.Target, p.Published)
			}
			got = append(got, p.Published)
		}
		sort.Strings(got)
		if !slices.Equal(got, ports) {
			t.Errorf("docker-compose.yml: %s publishes %v, want %v", name, got, ports)
		}
	}
	if t.Failed() {
		return
	}

	// Kratos listens on all interfaces on the ports that are published, and
	// tells browsers the published address.
	root := composeRepoRoot(t)
	var kcfg map[string]any
	raw, err := os.ReadFile(filepath.Join(root, "configs", "kratos", "kratos.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kcfg); err != nil {
		t.Fatalf("configs/kratos/kratos.yml: %v", err)
	}
	k := c.Services[svcKratos]
	for _, api := range []string{"public", "admin"} {
		env := "SERVE_" + strings.ToUpper(api) + "_"
		host := k.Environment[env+"HOST"]
		if host == "" {
			host = fmt.Sprint(composeDig(kcfg, "serve", api, "host"))
		}
		if host != "0.0.0.0" {
			t.Errorf("docker-compose.yml: Kratos's %s API listens on %q inside the container; set %sHOST: 0.0.0.0 or the published port reaches nothing", api, host, env)
		}
		port := k.Environment[env+"PORT"]
		if port == "" {
			port = fmt.Sprint(composeDig(kcfg, "serve", api, "port"))
		}
		if !slices.ContainsFunc(k.Ports, func(p composePort) bool { return p.Target == port }) {
			t.Errorf("docker-compose.yml: Kratos's %s API listens on %s, which the kratos service does not publish", api, port)
		}
		base := k.Environment[env+"BASE_URL"]
		if want := "http://127.0.0.1:" + port + "/"; base != want {
			t.Errorf("docker-compose.yml: kratos %sBASE_URL is %q, want %q (the address browsers and the host use)", env, base, want)
		}
	}

	// The gateway listens on all interfaces on the published ports.
	gwEnv := c.gatewayEnv(df)
	for _, l := range []struct{ key, port string }{{"GATEWAY_LISTEN", "8080"}, {"GATEWAY_DEMO_UI__LISTEN", "4455"}} {
		host, port, err := net.SplitHostPort(gwEnv[l.key])
		if err != nil || host != "0.0.0.0" || port != l.port {
			t.Errorf("the gateway container's %s is %q (Dockerfile ENV, then docker-compose.yml), want 0.0.0.0:%s: the published port must reach it", l.key, gwEnv[l.key], l.port)
		}
	}
	if !slices.Contains(df.final().expose, "8080") {
		t.Errorf("Dockerfile: the runtime stage EXPOSEs %v, want 8080", df.final().expose)
	}
}

func TestComposeGatewayEnv(t *testing.T) {
	vars := composeVars()
	c := loadCompose(t, vars)
	df := loadDockerfile(t)
	gw, ok := c.Services[svcGateway]
	if !ok {
		t.Fatalf("docker-compose.yml: service gateway is missing")
	}
	gwEnv := c.gatewayEnv(df)

	// Where the gateway reaches Kratos and Mailpit inside the compose network.
	for _, w := range []struct{ key, want string }{
		{"GATEWAY_KRATOS__ADMIN_URL", "http://" + svcKratos + ":4434"},
		{"GATEWAY_KRATOS__PUBLIC_URL", "http://" + svcKratos + ":4433"},
		{"GATEWAY_SMTP__HOST", svcMailpit},
		{"GATEWAY_SMTP__PORT", "1025"},
		{"GATEWAY_SMTP__SECURITY", "none"},
	} {
		if got := gwEnv[w.key]; strings.TrimSuffix(got, "/") != w.want {
			t.Errorf("docker-compose.yml: the gateway's %s is %q, want %q", w.key, got, w.want)
		}
	}
	if _, ok := gw.Environment["GATEWAY_SMTP__AUTHORIZATION_CODE"]; ok {
		t.Errorf("docker-compose.yml: the gateway sets GATEWAY_SMTP__AUTHORIZATION_CODE, but smtp.security none never sends it to a non-loopback host such as mailpit (and Mailpit needs no AUTH): drop it")
	}
	// Links the browser follows: Mailpit and Kratos as published on the host.
	if u := gwEnv["GATEWAY_DEMO_UI__MAILPIT_URL"]; !strings.HasPrefix(u, "http://127.0.0.1:8025/") {
		t.Errorf("docker-compose.yml: the gateway's GATEWAY_DEMO_UI__MAILPIT_URL is %q, want a page of http://127.0.0.1:8025 (what the browser opens)", u)
	}
	if u := gwEnv["GATEWAY_DEMO_UI__KRATOS_BROWSER_URL"]; u != "http://127.0.0.1:4433" {
		t.Errorf("docker-compose.yml: the gateway's GATEWAY_DEMO_UI__KRATOS_BROWSER_URL is %q, want http://127.0.0.1:4433: the browser cannot reach kratos:4433", u)
	}

	// The secrets come from the operator's environment and compose refuses to
	// start without them.
	rawC := loadCompose(t, nil)
	for _, key := range composeSecrets {
		raw := rawC.rawEnv(svcGateway, key)
		if !regexp.MustCompile(`^\$\{` + key + `:\?[^}]+\}$`).MatchString(raw) {
			t.Errorf("docker-compose.yml: the gateway's %s is %q, want ${%s:?<how to make one>} so compose refuses to start without it", key, raw, key)
		}
		if got := gw.Environment[key]; got != vars[key] {
			t.Errorf("docker-compose.yml: the gateway's %s interpolates to %q, want the operator's value", key, got)
		}
	}
	if _, err := parseCompose(t, map[string]string{}); err == nil {
		t.Errorf("docker-compose.yml: interpolating without %v succeeds; compose must refuse to start without them", composeSecrets)
	} else {
		for _, key := range composeSecrets {
			if !strings.Contains(err.Error(), key) {
				t.Errorf("docker-compose.yml: without %s set, interpolation does not complain about it: %v", key, err)
			}
		}
	}

	// Every GATEWAY_ variable names a key of configs/gateway.yaml.
	known, err := gatewayConfigKeys(filepath.Join(composeRepoRoot(t), "configs", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		where string
		env   map[string]string
	}{{"docker-compose.yml (gateway)", gw.Environment}, {"Dockerfile (ENV)", df.final().env}} {
		for key := range src.env {
			if !strings.HasPrefix(key, "GATEWAY_") {
				continue
			}
			p := gatewayEnvKeyPath(key)
			if !known[p] {
				t.Errorf("%s sets %s, but %s is not a key of configs/gateway.yaml (GATEWAY_ + key path in upper case, \"__\" between levels)", src.where, key, p)
			}
		}
	}
}

// TestComposeGatewayConfigCheck runs `gateway config check` with the
// environment the gateway container gets, so the gateway itself (host and
// plugin) accepts every key and value of it.
func TestComposeGatewayConfigCheck(t *testing.T) {
	vars := composeVars()
	c := loadCompose(t, vars)
	df := loadDockerfile(t)
	root := composeRepoRoot(t)
	gw := c.Services[svcGateway]

	gatewayBin, pluginBin := composeGatewayBinaries(t)
	gwEnv := c.gatewayEnv(df)
	if p := gwEnv["GATEWAY_PLUGIN__PATH"]; !slices.Contains(df.final().copyDests(), p) {
		t.Errorf("the gateway container's GATEWAY_PLUGIN__PATH is %q, where the Dockerfile copies nothing", p)
	}
	gwEnv["GATEWAY_PLUGIN__PATH"] = pluginBin

	cmd := gw.Command
	if len(cmd) == 0 {
		cmd = df.final().cmd
	}
	cfg := composeFlag(cmd, "--config")
	m, ok := gw.mountOf(cfg)
	if !ok {
		t.Fatalf("docker-compose.yml: no mount provides the gateway's --config %s", cfg)
	}
	check := exec.Command(gatewayBin, "config", "check", "--config", m.hostPath(root, cfg))
	check.Dir = t.TempDir()
	check.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range gwEnv {
		check.Env = append(check.Env, k+"="+v)
	}
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("`gateway config check` refuses the gateway container's config and environment: %v\n%s", err, out)
	}
}

func TestComposeDockerfile(t *testing.T) {
	df := loadDockerfile(t)
	root := composeRepoRoot(t)
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: %d stage(s), want a build stage and a runtime stage", len(df.stages))
	}

	// The build stage's Go is the one go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	build := df.stages[0]
	if goVersion == nil || !strings.HasPrefix(build.image, "golang:"+string(goVersion[1])) {
		t.Errorf("Dockerfile: the build stage is FROM %q, want golang:%s (go.mod's go directive)", build.image, goVersion[1])
	}

	// Both binaries, static and reproducible.
	built := map[string]string{} // package -> output path
	for _, st := range df.stages {
		for _, b := range st.goBuilds {
			for _, pkg := range b.pkgs {
				built[pkg] = b.out
				if !b.trimpath {
					t.Errorf("Dockerfile: `go build %s` lacks -trimpath", pkg)
				}
				if b.cgo != "0" {
					t.Errorf("Dockerfile: `go build %s` runs with CGO_ENABLED=%q, want 0 (the runtime image has no libc)", pkg, b.cgo)
				}
			}
		}
	}
	final := df.final()
	dests := map[string]string{} // binary name -> path in the runtime image
	for _, pkg := range []string{"./host/cmd/gateway", "./plugin/cmd/gateway-email-plugin"} {
		out, ok := built[pkg]
		if !ok {
			t.Errorf("Dockerfile: no stage runs `go build ... %s` (built: %v)", pkg, composeKeys(built))
			continue
		}
		if out == "" {
			t.Errorf("Dockerfile: `go build %s` has no -o", pkg)
			continue
		}
		dst := final.copiedFrom(df, out)
		if dst == "" {
			t.Errorf("Dockerfile: the runtime stage does not COPY --from the build stage's %s (%s)", out, pkg)
			continue
		}
		dests[path.Base(pkg)] = dst
	}
	if p, ok := dests["gateway-email-plugin"]; ok && final.env["GATEWAY_PLUGIN__PATH"] != p {
		t.Errorf("Dockerfile: GATEWAY_PLUGIN__PATH is %q, but the plugin is copied to %s", final.env["GATEWAY_PLUGIN__PATH"], p)
	}
	if len(final.entrypoint) == 0 || !final.execForm {
		t.Errorf("Dockerfile: ENTRYPOINT/CMD must be in exec form ([\"gateway\"]): the runtime image has no shell")
	} else if ep := final.entrypoint[0]; ep != dests["gateway"] && !(ep == path.Base(ep) && path.Join("/usr/local/bin", ep) == dests["gateway"]) {
		t.Errorf("Dockerfile: ENTRYPOINT %q does not run the gateway copied to %s", final.entrypoint, dests["gateway"])
	}
	if !composeHasPrefix(final.cmd, "serve") || composeFlag(final.cmd, "--config") == "" {
		t.Errorf("Dockerfile: CMD is %q, want serve --config <gateway.yaml>", final.cmd)
	}
	if u := final.user; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "root:") || strings.HasPrefix(u, "0:") {
		t.Errorf("Dockerfile: the runtime stage runs as %q, want a non-root USER", u)
	}

	// .dockerignore keeps the build context small and keeps what the build needs.
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	for _, p := range []string{".git", "bin", ".cache", ".stack", "integration/.artifacts"} {
		if !slices.Contains(patterns, p) {
			t.Errorf(".dockerignore does not exclude %s/", p)
		}
	}
	needed := []string{"go.mod", "go.sum", "host", "plugin", "sdk"}
	for _, st := range df.stages {
		for _, cp := range st.copies {
			if cp.from == "" {
				needed = append(needed, cp.srcs...)
			}
		}
	}
	for _, n := range needed {
		for _, p := range patterns {
			if ok, _ := path.Match(p, n); ok || strings.HasPrefix(n, p+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s, which the Dockerfile needs", p, n)
			}
		}
	}
}

// ---- docker-compose.yml ----------------------------------------------------

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`

	raw     map[string]any
	rawNode *yaml.Node
}

type composeService struct {
	Image       string           `yaml:"image"`
	Build       composeBuild     `yaml:"build"`
	Entrypoint  composeArgs      `yaml:"entrypoint"`
	Command     composeArgs      `yaml:"command"`
	Environment composeEnv       `yaml:"environment"`
	Ports       []composePort    `yaml:"ports"`
	Volumes     []composeMount   `yaml:"volumes"`
	DependsOn   composeDependsOn `yaml:"depends_on"`
	Restart     string           `yaml:"restart"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

func (b composeBuild) dockerfile() string {
	if b.Dockerfile == "" {
		return "Dockerfile"
	}
	return b.Dockerfile
}

// composeArgs is a command or entrypoint: a list, or a string split on spaces.
type composeArgs []string

func (a *composeArgs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = strings.Fields(n.Value)
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*a = l
	return err
}

// composeEnv is environment: in map or KEY=VALUE list form.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	*e = composeEnv{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
		return nil
	}
	var m map[string]*string
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		if v != nil {
			(*e)[k] = *v
		} else {
			(*e)[k] = ""
		}
	}
	return nil
}

type composePort struct {
	HostIP, Published, Target string
	spec                      string
}

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var l struct {
			Target    any    `yaml:"target"`
			Published any    `yaml:"published"`
			HostIP    string `yaml:"host_ip"`
		}
		if err := n.Decode(&l); err != nil {
			return err
		}
		*p = composePort{HostIP: l.HostIP, Published: fmt.Sprint(l.Published), Target: fmt.Sprint(l.Target), spec: fmt.Sprintf("%v", l)}
		return nil
	}
	s := strings.SplitN(n.Value, "/", 2)[0]
	p.spec = n.Value
	if strings.HasPrefix(s, "[") { // [::1]:8080:8080
		end := strings.Index(s, "]")
		if end < 0 {
			return fmt.Errorf("port %q: unterminated [", n.Value)
		}
		p.HostIP, s = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	}
	parts := strings.Split(s, ":")
	switch {
	case p.HostIP != "" && len(parts) == 2:
		p.Published, p.Target = parts[0], parts[1]
	case len(parts) == 3:
		p.HostIP, p.Published, p.Target = parts[0], parts[1], parts[2]
	case len(parts) == 2:
		p.Published, p.Target = parts[0], parts[1]
	case len(parts) == 1:
		p.Target = parts[0] // published on a random port of every interface
	default:
		return fmt.Errorf("port %q: not [ip:]published:target", n.Value)
	}
	return nil
}

type composeMount struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
}

func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		type plain composeMount
		return n.Decode((*plain)(m))
	}
	parts := strings.Split(n.Value, ":")
	switch len(parts) {
	case 1:
		*m = composeMount{Type: "volume", Target: parts[0]}
		return nil
	case 2, 3:
		m.Source, m.Target = parts[0], parts[1]
		if len(parts) == 3 {
			m.ReadOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
		}
	default:
		return fmt.Errorf("volume %q: not source:target[:mode]", n.Value)
	}
	m.Type = "volume"
	if strings.HasPrefix(m.Source, ".") || strings.HasPrefix(m.Source, "/") || strings.HasPrefix(m.Source, "~") {
		m.Type = "bind"
	}
	return nil
}

func (m composeMount) String() string {
	if m.Target == "" {
		return "none"
	}
	ro := ""
	if m.ReadOnly {
		ro = ":ro"
	}
	return fmt.Sprintf("%s %s:%s%s", m.Type, m.Source, m.Target, ro)
}

// hostPath maps a container path under a bind mount to the repository.
func (m composeMount) hostPath(root, containerPath string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(containerPath, m.Target), "/")
	return filepath.Join(root, filepath.FromSlash(m.Source), filepath.FromSlash(rel))
}

// composeDependsOn maps a dependency to its condition.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDependsOn{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		if v.Condition == "" {
			v.Condition = "service_started"
		}
		(*d)[k] = v.Condition
	}
	return nil
}

// mountOf finds the mount that provides containerPath (the deepest target).
func (s composeService) mountOf(containerPath string) (composeMount, bool) {
	var best composeMount
	found := false
	for _, m := range s.Volumes {
		t := path.Clean(m.Target)
		if containerPath == t || strings.HasPrefix(containerPath, t+"/") {
			if !found || len(t) > len(path.Clean(best.Target)) {
				best, found = m, true
			}
		}
	}
	return best, found
}

func (c *composeFile) serviceNames() []string { return composeKeys(c.Services) }

// rawEnv is an environment value as written, before interpolation.
func (c *composeFile) rawEnv(service, key string) string {
	return c.Services[service].Environment[key]
}

// gatewayEnv is the gateway container's GATEWAY_ environment: the image's
// ENV, then the compose file's.
func (c *composeFile) gatewayEnv(df *dockerfile) map[string]string {
	env := map[string]string{}
	for k, v := range df.final().env {
		env[k] = v
	}
	for k, v := range c.Services[svcGateway].Environment {
		env[k] = v
	}
	return env
}

// gatewayListenPort is the port the gateway listens on inside its container.
func (c *composeFile) gatewayListenPort(t *testing.T, df *dockerfile) string {
	t.Helper()
	listen := c.gatewayEnv(df)["GATEWAY_LISTEN"]
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("the gateway container's GATEWAY_LISTEN %q is not host:port", listen)
	}
	return port
}

func loadCompose(t *testing.T, vars map[string]string) *composeFile {
	t.Helper()
	c, err := parseCompose(t, vars)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// parseCompose reads docker-compose.yml and, unless vars is nil, interpolates
// every string value as compose does (${VAR}, ${VAR:-default},
// ${VAR:?error}, $$).
func parseCompose(t *testing.T, vars map[string]string) (*composeFile, error) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(composeRepoRoot(t), "docker-compose.yml"))
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if vars != nil {
		var errs []error
		composeInterpolateNode(&doc, vars, &errs)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	c := &composeFile{rawNode: &doc}
	if err := doc.Decode(c); err != nil {
		return nil, err
	}
	if err := doc.Decode(&c.raw); err != nil {
		return nil, err
	}
	return c, nil
}

func composeInterpolateNode(n *yaml.Node, vars map[string]string, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			composeInterpolateNode(c, vars, errs)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			composeInterpolateNode(n.Content[i], vars, errs)
		}
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			v, err := composeInterpolate(n.Value, vars)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("line %d: %w", n.Line, err))
			}
			n.Value = v
		}
	}
}

var composeVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// composeInterpolate is compose's variable substitution.
func composeInterpolate(s string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			b.WriteByte('$')
			i++
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return "", fmt.Errorf("%q: unterminated ${", s)
			}
			expr := rest[1:end]
			name := composeVarName.FindString(expr)
			if name == "" {
				return "", fmt.Errorf("%q: invalid interpolation ${%s}", s, expr)
			}
			op, arg := expr[len(name):], ""
			for _, o := range []string{":-", ":?", ":+", "-", "?", "+"} {
				if strings.HasPrefix(op, o) {
					op, arg = o, op[len(o):]
					break
				}
			}
			val, set := vars[name]
			switch op {
			case "":
				b.WriteString(val)
			case ":-", "-":
				if set && (val != "" || op == "-") {
					b.WriteString(val)
				} else {
					b.WriteString(arg)
				}
			case ":?", "?":
				if !set || (val == "" && op == ":?") {
					return "", fmt.Errorf("required variable %s is missing a value: %s", name, arg)
				}
				b.WriteString(val)
			case ":+", "+":
				if set && (val != "" || op == "+") {
					b.WriteString(arg)
				}
			default:
				return "", fmt.Errorf("%q: invalid interpolation ${%s}", s, expr)
			}
			i += 1 + end
		default:
			name := composeVarName.FindString(rest)
			if name == "" {
				return "", fmt.Errorf("%q: a lone $ (write $$ for a literal one)", s)
			}
			b.WriteString(vars[name])
			i += len(name)
		}
	}
	return b.String(), nil
}

// ---- the Kratos render script ----------------------------------------------

// kratosRender is how a Kratos service renders its config: the entrypoint
// script, and the container and host folders it reads and writes.
type kratosRender struct {
	scriptRel  string   // the script in the repository, e.g. deploy/kratos-render.sh
	scriptHost string   // ... as a host path
	scriptArgs []string // the entrypoint's arguments before the command
	src, dst   string   // container folders
	srcHost    string   // the host folder mounted at src (configs/kratos)
}

func kratosRenderOf(root, name string, s composeService) (kratosRender, error) {
	var r kratosRender
	// entrypoint: [/bin/sh, /deploy/kratos-render.sh, ...] or [/deploy/kratos-render.sh, ...]
	ep := slices.Clone(s.Entrypoint)
	if len(ep) > 0 && (path.Base(ep[0]) == "sh" || path.Base(ep[0]) == "ash") {
		ep = ep[1:]
	}
	if len(ep) == 0 || !strings.HasSuffix(ep[0], ".sh") {
		return r, fmt.Errorf("docker-compose.yml: %s's entrypoint %q runs no render script; configs/kratos/kratos.yml holds placeholders (%s, %s) that must be replaced before Kratos starts", name, s.Entrypoint, kratosPlaceholderURL, kratosPlaceholderKey)
	}
	m, ok := s.mountOf(ep[0])
	if !ok || m.Type != "bind" {
		return r, fmt.Errorf("docker-compose.yml: %s's entrypoint %s is not bind-mounted from the repository", name, ep[0])
	}
	r.scriptHost, r.scriptArgs = m.hostPath(root, ep[0]), ep[1:]
	r.scriptRel, _ = filepath.Rel(root, r.scriptHost)
	script, err := os.ReadFile(r.scriptHost)
	if err != nil {
		return r, fmt.Errorf("docker-compose.yml: %s's entrypoint %s: %v", name, ep[0], err)
	}
	folder := func(env string) (string, error) {
		if v := s.Environment[env]; v != "" {
			return v, nil
		}
		d := regexp.MustCompile(`\$\{` + env + `:-([^}]+)\}`).FindSubmatch(script)
		if d == nil {
			return "", fmt.Errorf("%s: no default for %s, and %s does not set it", r.scriptRel, env, name)
		}
		return string(d[1]), nil
	}
	if r.src, err = folder("KRATOS_CONFIG_SRC"); err != nil {
		return r, err
	}
	if r.dst, err = folder("KRATOS_CONFIG_DIR"); err != nil {
		return r, err
	}
	m, ok = s.mountOf(r.src)
	if !ok || m.Type != "bind" || m.hostPath(root, r.src) != filepath.Join(root, "configs", "kratos") {
		return r, fmt.Errorf("docker-compose.yml: %s renders from %s, which is not a bind mount of ./configs/kratos (mount: %v)", name, r.src, m)
	}
	if !m.ReadOnly {
		return r, fmt.Errorf("docker-compose.yml: %s must mount ./configs/kratos read-only (the rendered copy holds the key, the source must not)", name)
	}
	r.srcHost = m.hostPath(root, r.src)
	m, ok = s.mountOf(r.dst)
	if !ok || (m.Type != "tmpfs" && m.Type != "volume") {
		return r, fmt.Errorf("docker-compose.yml: %s renders into %s, which is not a tmpfs or volume mount (Kratos's image user cannot create it, and it must not be the repository)", name, r.dst)
	}
	return r, nil
}

// ---- Dockerfile ------------------------------------------------------------

type dockerfile struct {
	stages []*dockerStage
}

type dockerStage struct {
	image, name string
	env         map[string]string
	goBuilds    []dockerGoBuild
	copies      []dockerCopy
	expose      []string
	user        string
	entrypoint  []string
	cmd         []string
	execForm    bool
}

type dockerGoBuild struct {
	pkgs     []string
	out      string
	trimpath bool
	cgo      string
}

type dockerCopy struct {
	from string
	srcs []string
	dst  string
}

func (d *dockerfile) final() *dockerStage { return d.stages[len(d.stages)-1] }

// copyDests are the paths COPY writes in a stage (a directory destination
// counts with each source's name).
func (s *dockerStage) copyDests() []string {
	var out []string
	for _, c := range s.copies {
		for _, src := range c.srcs {
			if strings.HasSuffix(c.dst, "/") {
				out = append(out, path.Join(c.dst, path.Base(src)))
			} else {
				out = append(out, c.dst)
			}
		}
	}
	return out
}

// copiedFrom is where this stage copies a file of an earlier stage to.
func (s *dockerStage) copiedFrom(d *dockerfile, file string) string {
	for _, c := range s.copies {
		if c.from == "" {
			continue
		}
		from := -1
		for i, st := range d.stages {
			if st.name == c.from || strconv.Itoa(i) == c.from {
				from = i
			}
		}
		if from < 0 || !slices.ContainsFunc(d.stages[from].goBuilds, func(b dockerGoBuild) bool { return b.out == file }) {
			continue
		}
		for _, src := range c.srcs {
			if src == file {
				if strings.HasSuffix(c.dst, "/") {
					return path.Join(c.dst, path.Base(src))
				}
				return c.dst
			}
		}
	}
	return ""
}

func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(composeRepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	d, err := parseDockerfile(string(raw))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
}

func parseDockerfile(src string) (*dockerfile, error) {
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(src, "\n") {
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "#") || (trim == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trim, "\\") {
			cur.WriteString(strings.TrimSuffix(trim, "\\") + " ")
			continue
		}
		cur.WriteString(trim)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	d := &dockerfile{}
	args := map[string]string{}
	var st *dockerStage
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		instr, rest = strings.ToUpper(instr), strings.TrimSpace(rest)
		if instr == "ARG" {
			k, v, _ := strings.Cut(rest, "=")
			if st == nil {
				args[k] = strings.Trim(v, `"`)
			} else {
				st.env[k] = strings.Trim(v, `"`)
			}
			continue
		}
		if instr == "FROM" {
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, fmt.Errorf("FROM without an image: %q", l)
			}
			st = &dockerStage{image: os.Expand(f[0], func(k string) string { return args[k] }), env: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			d.stages = append(d.stages, st)
			continue
		}
		if st == nil {
			return nil, fmt.Errorf("%s before FROM", instr)
		}
		switch instr {
		case "ENV":
			words := dockerShellWords(rest)
			if len(words) > 0 && !strings.Contains(words[0], "=") { // ENV KEY value
				st.env[words[0]] = strings.Join(words[1:], " ")
				break
			}
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				st.env[k] = v
			}
		case "RUN":
			for _, seg := range regexp.MustCompile(`&&|;|\|\|`).Split(rest, -1) {
				words := dockerShellWords(seg)
				cgo := st.env["CGO_ENABLED"]
				for len(words) > 0 && strings.HasPrefix(words[0], "--mount") {
					words = words[1:]
				}
				for len(words) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(words[0]) {
					if v, ok := strings.CutPrefix(words[0], "CGO_ENABLED="); ok {
						cgo = v
					}
					words = words[1:]
				}
				if len(words) < 2 || words[0] != "go" || words[1] != "build" {
					continue
				}
				b := dockerGoBuild{cgo: cgo}
				for i := 2; i < len(words); i++ {
					w := words[i]
					switch {
					case w == "-o" && i+1 < len(words):
						b.out = words[i+1]
						i++
					case strings.HasPrefix(w, "-o="):
						b.out = strings.TrimPrefix(w, "-o=")
					case w == "-trimpath" || w == "-trimpath=true":
						b.trimpath = true
					case strings.HasPrefix(w, "./"):
						b.pkgs = append(b.pkgs, w)
					}
				}
				st.goBuilds = append(st.goBuilds, b)
			}
		case "COPY", "ADD":
			words := dockerShellWords(rest)
			var c dockerCopy
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				if v, ok := strings.CutPrefix(words[0], "--from="); ok {
					c.from = v
				}
				words = words[1:]
			}
			if strings.HasPrefix(strings.Join(words, " "), "[") {
				if err := json.Unmarshal([]byte(strings.Join(words, " ")), &words); err != nil {
					return nil, fmt.Errorf("%s: %v", l, err)
				}
			}
			if len(words) < 2 {
				return nil, fmt.Errorf("%s needs a source and a destination: %q", instr, l)
			}
			c.srcs, c.dst = words[:len(words)-1], words[len(words)-1]
			st.copies = append(st.copies, c)
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				st.expose = append(st.expose, strings.SplitN(p, "/", 2)[0])
			}
		case "USER":
			st.user = rest
		case "ENTRYPOINT", "CMD":
			var v []string
			exec := json.Unmarshal([]byte(rest), &v) == nil
			if !exec {
				v = []string{"/bin/sh", "-c", rest}
			}
			if instr == "ENTRYPOINT" {
				st.entrypoint, st.execForm = v, exec
			} else {
				st.cmd = v
				st.execForm = st.execForm && exec
			}
		}
	}
	if len(d.stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return d, nil
}

// dockerShellWords splits on blanks, honouring single and double quotes.
func dockerShellWords(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(ch)
		case ch == '"' || ch == '\'':
			quote, in = ch, true
		case ch == ' ' || ch == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// ---- helpers -----------------------------------------------------------------

func composeRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// gatewayConfigKeys are the key paths of configs/gateway.yaml (smtp.host,
// secrets.cipher, ...): every leaf of its mappings.
func gatewayConfigKeys(file string) (map[string]bool, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	keys := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(prefix+k+".", sub)
				continue
			}
			keys[prefix+k] = true
		}
	}
	walk("", m)
	return keys, nil
}

// gatewayEnvKeyPath is README's rule backwards: GATEWAY_SMTP__AUTHORIZATION_CODE -> smtp.authorization_code.
func gatewayEnvKeyPath(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "GATEWAY_")), "__", ".")
}

// composeGatewayBinaries returns the harness's gateway and plugin, or builds them.
func composeGatewayBinaries(t *testing.T) (gateway, plugin string) {
	t.Helper()
	if env != nil && isExecutable(env.gatewayBin) && isExecutable(env.pluginBin) {
		return env.gatewayBin, env.pluginBin
	}
	dir := t.TempDir()
	gateway, plugin = filepath.Join(dir, "gateway"), filepath.Join(dir, "gateway-email-plugin")
	for bin, pkg := range map[string]string{gateway: "./host/cmd/gateway", plugin: "./plugin/cmd/gateway-email-plugin"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = composeRepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return gateway, plugin
}

func composeDig(v any, keyPath ...string) any {
	for _, k := range keyPath {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func composeFlag(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func composeHasPrefix(args []string, prefix ...string) bool {
	return len(args) >= len(prefix) && slices.Equal(args[:len(prefix)], prefix)
}

func composeKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func composeEvalSymlinks(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
