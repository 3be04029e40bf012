package deploy_test

// Static checks of the deployment files. There is no Docker engine or
// Kubernetes cluster on the build machines, so these tests check what can be
// checked without one: docker-compose.yml as docker-compose itself reads it
// (`docker-compose config`), the Grafana provisioning it mounts, the
// Dockerfile, and the Kubernetes manifests with their kustomization.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/deploy/grafana"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/profileapi"
	"github.com/streamcdp/streamcdp/topology"
)

// Paths relative to this package directory, where `go test` runs.
const (
	composePath         = "../docker-compose.yml"
	dockerfilePath      = "../Dockerfile"
	grafanaProvisioning = "grafana/provisioning"
	grafanaDashboards   = "grafana/dashboards"
	kubernetesDir       = "kubernetes"
)

// processors are the `cdp run <name>` processes. Each has its own compose
// service and its own Kubernetes workload (a StatefulSet, or for the api a
// Deployment).
var processors = []string{"identity", "features", "segments", "warehouse", "recommend", "api"}

// runtimeBatchTimeout is how long the runtime may take to finish the batch in
// flight after SIGTERM: processing.Config.TransactionTimeout's default. A
// consumer's grace period before SIGKILL must cover it plus minShutdownSlack
// for the commit and closing the client.
const (
	runtimeBatchTimeout = 30 * time.Second
	minShutdownSlack    = 15 * time.Second
)

// consumerProcessors are the processors that are consumer-group members: the
// ones with inputs in the built-in topology. Each needs a stable, unique
// instance id (transactional id and static member id), so in Kubernetes a
// StatefulSet with the pod name as its id.
func consumerProcessors(t *testing.T) []string {
	t.Helper()
	topo, err := topology.Default()
	if err != nil {
		t.Fatalf("built-in topology: %v", err)
	}
	var names []string
	for _, p := range topo.Processors {
		if len(p.Inputs) == 0 {
			continue
		}
		if !slices.Contains(processors, p.Name) {
			t.Errorf("topology processor %s consumes %v but is not in this test's processors list", p.Name, p.Inputs)
		}
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		t.Fatal("the built-in topology has no processor with inputs")
	}
	return names
}

// composeCDPEnv is the environment every `cdp` container in docker-compose.yml
// must get: the compose service names as hosts.
var composeCDPEnv = map[string]string{
	"CDP_KAFKA_BROKERS":       "kafka:19092",
	"CDP_SCHEMA_REGISTRY_URL": "http://schema-registry:8081",
	"CDP_REDIS_URL":           "redis://redis:6379/0",
	"CDP_CLICKHOUSE_DSN":      "clickhouse://clickhouse:9000/default",
	"CDP_TOPIC_PREFIX":        "cdp",
}

// infraImages maps the third-party compose services to the image repository
// they must use and the lowest acceptable major.minor version.
var infraImages = map[string]struct {
	repo string
	min  [2]int
}{
	"kafka":           {"apache/kafka", [2]int{3, 9}},
	"schema-registry": {"confluentinc/cp-schema-registry", [2]int{7, 0}},
	"redis":           {"redis", [2]int{7, 0}},
	"clickhouse":      {"clickhouse/clickhouse-server", [2]int{25, 8}}, // clickhouse-go v2 needs >= 25.8
	"grafana":         {"grafana/grafana", [2]int{11, 0}},
}

// missingTool skips on a developer machine but fails under CI=true, where
// every test must run.
func missingTool(t *testing.T, name, install string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not on PATH (install it with: %s)", name, install)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so this test does not skip")
	}
	t.Skip(msg)
}

// checkWithConfigLoader feeds env to the same loader every `cdp` command uses
// and fails if it rejects the values.
func checkWithConfigLoader(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	s, err := config.Load()
	if err != nil {
		t.Fatalf("config.Load rejects the deployment's CDP_* values: %v", err)
	}
	if got, want := strings.Join(s.KafkaBrokers, ","), env["CDP_KAFKA_BROKERS"]; got != want {
		t.Errorf("config.Load read brokers %q, want %q", got, want)
	}
}

// ---------------------------------------------------------------------------
// docker-compose.yml

// stringList decodes either a YAML string (split on spaces, as compose does
// for command and healthcheck) or a list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// composePort accepts the short ("8080:8080") and long (published/target)
// forms; docker-compose 1.29 and compose v2 print the long form.
type composePort struct{ Published, Target string }

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(strings.SplitN(n.Value, "/", 2)[0], ":")
		if len(parts) < 2 {
			return fmt.Errorf("port %q publishes nothing", n.Value)
		}
		p.Published, p.Target = parts[len(parts)-2], parts[len(parts)-1]
		return nil
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	p.Published, p.Target = fmt.Sprint(m["published"]), fmt.Sprint(m["target"])
	return nil
}

// composeVolume accepts "source:target[:mode]" and the long form.
type composeVolume struct{ Source, Target string }

func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 {
			return fmt.Errorf("volume %q has no target", n.Value)
		}
		v.Source, v.Target = parts[0], parts[1]
		return nil
	}
	var m struct{ Source, Target string }
	if err := n.Decode(&m); err != nil {
		return err
	}
	v.Source, v.Target = m.Source, m.Target
	return nil
}

type composeService struct {
	Image string
	Build *struct {
		Context    string
		Dockerfile string
	}
	Command     stringList
	Environment map[string]any
	Healthcheck *struct {
		Test    stringList
		Disable bool
	}
	DependsOn       map[string]struct{ Condition string } `yaml:"depends_on"`
	Ports           []composePort
	Volumes         []composeVolume
	Ulimits         map[string]yaml.Node
	Restart         string
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeFile struct {
	Services map[string]composeService
	Volumes  map[string]any
}

// env returns the service's environment with every value as a string.
func (s composeService) env() map[string]string {
	m := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		if v == nil {
			m[k] = ""
			continue
		}
		m[k] = fmt.Sprint(v)
	}
	return m
}

func (s composeService) hasHealthcheck() bool {
	return s.Healthcheck != nil && !s.Healthcheck.Disable &&
		len(s.Healthcheck.Test) > 0 && s.Healthcheck.Test[0] != "NONE"
}

func (s composeService) publishes(port string) bool {
	return slices.ContainsFunc(s.Ports, func(p composePort) bool { return p.Published == port && p.Target == port })
}

func (s composeService) mount(target string) (composeVolume, bool) {
	i := slices.IndexFunc(s.Volumes, func(v composeVolume) bool { return v.Target == target })
	if i < 0 {
		return composeVolume{}, false
	}
	return s.Volumes[i], true
}

// composeConfig runs `docker-compose config`, which validates the file and
// prints it with anchors, merges and relative paths resolved.
func composeConfig(t *testing.T) composeFile {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		missingTool(t, "docker-compose", "apt-get install -y docker-compose")
	}
	cmd := exec.Command(bin, "-f", composePath, "config")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("docker-compose -f %s config failed: %v\n%s", composePath, err, ee.Stderr)
		}
		t.Fatalf("running docker-compose: %v", err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(out, &cf); err != nil {
		t.Fatalf("parsing `docker-compose config` output: %v\n%s", err, out)
	}
	if len(cf.Services) == 0 {
		t.Fatalf("`docker-compose config` printed no services:\n%s", out)
	}
	return cf
}

// imageVersionRE matches pinned tags such as 4.1.1, 25.8.33.6 or 7.4.2-bookworm.
var imageVersionRE = regexp.MustCompile(`^(\d+)\.(\d+)(\.\d+)*(-[0-9A-Za-z.-]+)?$`)

// pinnedVersion splits "repo:tag" and returns the repository and the tag's
// major.minor, or an error if the tag is missing, floating or not a version.
func pinnedVersion(image string) (repo string, major, minor int, err error) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, 0, 0, fmt.Errorf("image %q has no tag", image)
	}
	repo, tag := image[:i], image[i+1:]
	m := imageVersionRE.FindStringSubmatch(tag)
	if m == nil {
		return repo, 0, 0, fmt.Errorf("image %q: tag %q is not a pinned major.minor[.patch] version", image, tag)
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return repo, major, minor, nil
}

func TestPinnedVersion(t *testing.T) {
	for image, ok := range map[string]bool{
		"apache/kafka:4.1.1": true, "clickhouse/clickhouse-server:25.8.33.6": true,
		"redis:7.4.2-bookworm": true, "redis:7": false, "redis:latest": false, "redis": false,
		"localhost:5000/redis": false,
	} {
		if _, _, _, err := pinnedVersion(image); (err == nil) != ok {
			t.Errorf("pinnedVersion(%q) error = %v, want pinned=%v", image, err, ok)
		}
	}
}

func TestComposeConfig(t *testing.T) {
	cf := composeConfig(t)
	repoRoot, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("services", func(t *testing.T) {
		want := append([]string{"kafka", "schema-registry", "redis", "clickhouse", "grafana", "topology-init"}, processors...)
		for _, name := range want {
			if _, ok := cf.Services[name]; !ok {
				t.Errorf("service %q is missing", name)
			}
		}
	})

	t.Run("pinned infrastructure images", func(t *testing.T) {
		for name, want := range infraImages {
			svc, ok := cf.Services[name]
			if !ok {
				continue // reported by "services"
			}
			repo, major, minor, err := pinnedVersion(svc.Image)
			if err != nil {
				t.Errorf("service %s: %v", name, err)
				continue
			}
			if repo != want.repo {
				t.Errorf("service %s uses image %s, want repository %s", name, svc.Image, want.repo)
			}
			if major < want.min[0] || (major == want.min[0] && minor < want.min[1]) {
				t.Errorf("service %s: image %s is older than %d.%d", name, svc.Image, want.min[0], want.min[1])
			}
		}
	})

	t.Run("cdp containers", func(t *testing.T) {
		var image string
		for _, name := range append(slices.Clone(processors), "topology-init") {
			svc, ok := cf.Services[name]
			if !ok {
				continue
			}
			if svc.Build == nil || filepath.Clean(svc.Build.Context) != repoRoot || svc.Build.Dockerfile != "Dockerfile" {
				t.Errorf("service %s must be built from %s/Dockerfile, got build %+v", name, repoRoot, svc.Build)
			}
			if image == "" {
				image = svc.Image
			} else if svc.Image != image {
				t.Errorf("service %s uses image %q, others %q: all cdp containers share one image", name, svc.Image, image)
			}
			wantCmd := []string{"run", name}
			if name == "topology-init" {
				wantCmd = []string{"topology", "apply"}
			}
			if !slices.Equal(svc.Command, wantCmd) {
				t.Errorf("service %s runs %q, want cdp %q", name, svc.Command, wantCmd)
			}
			env := svc.env()
			for k, v := range composeCDPEnv {
				if env[k] != v {
					t.Errorf("service %s: %s=%q, want %q", name, k, env[k], v)
				}
			}
		}
		if image == "" {
			t.Fatal("no cdp container found")
		}
		checkWithConfigLoader(t, composeCDPEnv)
	})

	t.Run("instance ids", func(t *testing.T) {
		// Every container running a consumer-group processor needs its own
		// fixed CDP_INSTANCE_ID: without one the id is the container's host
		// name, which changes when compose re-creates it; two containers
		// with one id fence each other.
		consumers := consumerProcessors(t)
		owner := map[string]string{} // processor/instance id -> service
		covered := map[string]bool{}
		for name, svc := range cf.Services {
			if len(svc.Command) < 2 || svc.Command[0] != "run" || !slices.Contains(consumers, svc.Command[1]) {
				continue
			}
			proc := svc.Command[1]
			id := svc.env()["CDP_INSTANCE_ID"]
			if id == "" {
				t.Errorf("service %s runs consumer-group processor %s without CDP_INSTANCE_ID", name, proc)
				continue
			}
			key := proc + "/" + id
			if other, dup := owner[key]; dup {
				t.Errorf("services %s and %s both run %s with CDP_INSTANCE_ID=%s; instance ids must be unique", other, name, proc, id)
			}
			owner[key] = name
			covered[proc] = true
			grace, err := time.ParseDuration(svc.StopGracePeriod)
			if err != nil || grace < runtimeBatchTimeout+minShutdownSlack {
				t.Errorf("service %s: stop_grace_period %q, want at least %v so the batch in flight can commit (compose's default is 10s)",
					name, svc.StopGracePeriod, runtimeBatchTimeout+minShutdownSlack)
			}
		}
		for _, proc := range consumers {
			if !covered[proc] {
				t.Errorf("no compose service runs %s with an instance id", proc)
			}
		}
	})

	t.Run("start order", func(t *testing.T) {
		// Every condition must be satisfiable: service_healthy needs a
		// healthcheck, service_completed_successfully a one-shot service.
		for name, svc := range cf.Services {
			for dep, d := range svc.DependsOn {
				target, ok := cf.Services[dep]
				if !ok {
					t.Errorf("service %s depends on unknown service %s", name, dep)
					continue
				}
				switch d.Condition {
				case "service_healthy":
					if !target.hasHealthcheck() {
						t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
					}
				case "service_completed_successfully":
					if target.Restart != "" && target.Restart != "no" {
						t.Errorf("service %s waits for %s to complete, but %s has restart: %s", name, dep, dep, target.Restart)
					}
				}
			}
		}
		if c := cf.Services["topology-init"].DependsOn["kafka"].Condition; c != "service_healthy" {
			t.Errorf("topology-init must wait for kafka to be healthy, condition is %q", c)
		}
		for _, name := range processors {
			deps := cf.Services[name].DependsOn
			if c := deps["topology-init"].Condition; c != "service_completed_successfully" {
				t.Errorf("service %s: depends_on topology-init condition %q, want service_completed_successfully", name, c)
			}
			for _, infra := range []string{"kafka", "schema-registry", "redis", "clickhouse"} {
				if c := deps[infra].Condition; c != "service_healthy" {
					t.Errorf("service %s: depends_on %s condition %q, want service_healthy", name, infra, c)
				}
			}
		}
	})

	t.Run("healthchecks", func(t *testing.T) {
		for _, name := range []string{"kafka", "schema-registry", "redis", "clickhouse"} {
			if !cf.Services[name].hasHealthcheck() {
				t.Errorf("service %s has no healthcheck", name)
			}
		}
	})

	t.Run("kafka listeners", func(t *testing.T) {
		kafka := cf.Services["kafka"]
		env := kafka.env()
		if !strings.Contains(env["KAFKA_PROCESS_ROLES"], "controller") || !strings.Contains(env["KAFKA_PROCESS_ROLES"], "broker") {
			t.Errorf("kafka must run KRaft broker+controller, KAFKA_PROCESS_ROLES=%q", env["KAFKA_PROCESS_ROLES"])
		}
		advertised := strings.Split(env["KAFKA_ADVERTISED_LISTENERS"], ",")
		hasAddr := func(addr string) bool {
			return slices.ContainsFunc(advertised, func(l string) bool { return strings.HasSuffix(l, "://"+addr) })
		}
		if !hasAddr(composeCDPEnv["CDP_KAFKA_BROKERS"]) {
			t.Errorf("containers connect to %s, but kafka advertises %q", composeCDPEnv["CDP_KAFKA_BROKERS"], advertised)
		}
		if !hasAddr("localhost:9092") || !kafka.publishes("9092") {
			t.Errorf("kafka must advertise localhost:9092 and publish 9092 for the host (advertised %q, ports %+v)", advertised, kafka.Ports)
		}
	})

	t.Run("named volumes", func(t *testing.T) {
		for name, target := range map[string]string{
			"kafka": "/var/lib/kafka/data", "redis": "/data",
			"clickhouse": "/var/lib/clickhouse", "grafana": "/var/lib/grafana",
		} {
			v, ok := cf.Services[name].mount(target)
			if !ok {
				t.Errorf("service %s mounts nothing at %s", name, target)
				continue
			}
			if _, named := cf.Volumes[v.Source]; !named {
				t.Errorf("service %s: %s is mounted from %q, want a named volume", name, target, v.Source)
			}
		}
	})

	t.Run("redis", func(t *testing.T) {
		cmd := strings.Join(cf.Services["redis"].Command, " ")
		if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync always") {
			t.Errorf("redis command %q does not enable the append-only file with appendfsync always", cmd)
		}
		if !cf.Services["redis"].publishes("6379") {
			t.Error("redis does not publish 6379")
		}
	})

	t.Run("clickhouse", func(t *testing.T) {
		ch := cf.Services["clickhouse"]
		for _, p := range []string{"8123", "9000"} {
			if !ch.publishes(p) {
				t.Errorf("clickhouse does not publish %s", p)
			}
		}
		nofile, ok := ch.Ulimits["nofile"]
		if !ok {
			t.Fatal("clickhouse has no nofile ulimit")
		}
		var limits struct{ Soft, Hard int }
		if nofile.Kind == yaml.ScalarNode {
			_ = nofile.Decode(&limits.Soft)
			limits.Hard = limits.Soft
		} else if err := nofile.Decode(&limits); err != nil {
			t.Fatalf("clickhouse nofile ulimit: %v", err)
		}
		if limits.Soft < 262144 || limits.Hard < 262144 {
			t.Errorf("clickhouse nofile ulimit %+v, want >= 262144", limits)
		}
	})

	t.Run("api", func(t *testing.T) {
		if !cf.Services["api"].publishes("8080") {
			t.Errorf("api does not publish 8080: %+v", cf.Services["api"].Ports)
		}
		// `cdp run api` refuses to start without a token: the container
		// needs one the API accepts, and the development token must say so.
		tok := cf.Services["api"].env()["CDP_API_TOKENS"]
		if _, err := profileapi.ParseTokens(tok, ""); err != nil {
			t.Errorf("api: CDP_API_TOKENS=%q: %v", tok, err)
		}
		if !strings.Contains(tok, "dev") || !strings.Contains(tok, "replace") {
			t.Errorf("api: CDP_API_TOKENS=%q does not mark itself as a development token to replace", tok)
		}
		for k, v := range composeCDPEnv {
			if got := cf.Services["api"].env()[k]; got != v {
				t.Errorf("api: %s=%q, want %q (x-cdp-env)", k, got, v)
			}
		}
	})

	t.Run("grafana", func(t *testing.T) {
		g := cf.Services["grafana"]
		// The plugin's version is pinned to the one the dashboards are
		// generated for (deploy/grafana.PluginVersion).
		if want := "grafana-clickhouse-datasource " + grafana.PluginVersion; g.env()["GF_INSTALL_PLUGINS"] != want {
			t.Errorf("grafana installs GF_INSTALL_PLUGINS=%q, want %q", g.env()["GF_INSTALL_PLUGINS"], want)
		}
		prov, ok := g.mount("/etc/grafana/provisioning")
		if !ok {
			t.Fatal("grafana does not mount /etc/grafana/provisioning")
		}
		if want := filepath.Join(repoRoot, "deploy", grafanaProvisioning); filepath.Clean(prov.Source) != want {
			t.Errorf("grafana provisioning comes from %s, want %s", prov.Source, want)
		}
		// The dashboards provider reads a path inside the container; the
		// repo's dashboards folder must be mounted exactly there.
		providerPath := dashboardProviderPath(t)
		dash, ok := g.mount(providerPath)
		if !ok {
			t.Fatalf("the dashboards provider reads %s, but grafana mounts nothing there", providerPath)
		}
		if want := filepath.Join(repoRoot, "deploy", grafanaDashboards); filepath.Clean(dash.Source) != want {
			t.Errorf("grafana dashboards come from %s, want %s", dash.Source, want)
		}
		// The datasource must point at the compose clickhouse service.
		ds := clickhouseDatasource(t)
		if _, ok := cf.Services[ds.JSONData.Host]; !ok {
			t.Errorf("the ClickHouse datasource points at host %q, which is not a compose service", ds.JSONData.Host)
		}
	})
}

// TestComposeEnvWrittenOnce reads docker-compose.yml itself (no
// docker-compose needed): the CDP_* environment is defined once in the
// x-cdp-env extension field and reused through its anchor.
func TestComposeEnvWrittenOnce(t *testing.T) {
	raw, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	for k := range composeCDPEnv {
		if n := bytes.Count(raw, []byte(k+":")); n != 1 {
			t.Errorf("%s is set %d times in docker-compose.yml; define it once in x-cdp-env", k, n)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	root := doc.Content[0]
	var ext *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "x-cdp-env" {
			ext = root.Content[i+1]
		}
	}
	if ext == nil {
		t.Fatal("docker-compose.yml has no top-level x-cdp-env extension field")
	}
	if ext.Anchor == "" {
		t.Error("x-cdp-env has no YAML anchor, so services cannot reuse it")
	}
	var env map[string]string
	if err := ext.Decode(&env); err != nil {
		t.Fatalf("x-cdp-env: %v", err)
	}
	for k, v := range composeCDPEnv {
		if env[k] != v {
			t.Errorf("x-cdp-env: %s=%q, want %q", k, env[k], v)
		}
	}
}

// ---------------------------------------------------------------------------
// Grafana provisioning

type grafanaDatasource struct {
	Name     string
	UID      string
	Type     string
	JSONData struct {
		Host     string
		Port     int
		Protocol string
	} `yaml:"jsonData"`
}

func clickhouseDatasource(t *testing.T) grafanaDatasource {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(grafanaProvisioning, "datasources", "clickhouse.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Datasources []grafanaDatasource }
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("datasource provisioning: %v", err)
	}
	for _, ds := range f.Datasources {
		if ds.Type == "grafana-clickhouse-datasource" {
			return ds
		}
	}
	t.Fatal("no grafana-clickhouse-datasource datasource is provisioned")
	return grafanaDatasource{}
}

func dashboardProviderPath(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(grafanaProvisioning, "dashboards", "streamcdp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("dashboard provisioning: %v", err)
	}
	if len(f.Providers) != 1 || f.Providers[0].Type != "file" || f.Providers[0].Options.Path == "" {
		t.Fatalf("want one file dashboards provider with a path, got %+v", f.Providers)
	}
	return f.Providers[0].Options.Path
}

// fromTable finds the tables a query reads (subqueries start with a
// parenthesis and are skipped).
var fromTable = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_.]*)`)

// warehouseTables are the tables and views the embedded migrations create.
var warehouseTables = func() map[string]bool {
	out := map[string]bool{}
	create := regexp.MustCompile(`(?i)CREATE\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+([a-z_][a-z0-9_]*)`)
	files, _ := fs.Glob(migrations.FS, "*.sql")
	for _, f := range files {
		b, _ := fs.ReadFile(migrations.FS, f)
		for _, m := range create.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	return out
}()

func TestGrafanaProvisioning(t *testing.T) {
	if len(warehouseTables) < 10 || !warehouseTables["events"] {
		t.Fatalf("the migrations' tables were not found: %v", warehouseTables)
	}
	ds := clickhouseDatasource(t)
	if ds.UID == "" {
		t.Error("the ClickHouse datasource needs a fixed uid for dashboards to reference")
	}
	if ds.JSONData.Host != "clickhouse" || ds.JSONData.Port != 9000 || ds.JSONData.Protocol != "native" {
		t.Errorf("datasource must use the native protocol on clickhouse:9000, got %+v", ds.JSONData)
	}

	files, err := filepath.Glob(filepath.Join(grafanaDashboards, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (err %v)", grafanaDashboards, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string
			Title  string
			Panels []struct {
				Title      string
				Datasource struct{ Type, UID string }
				Targets    []struct {
					Datasource struct{ Type, UID string }
					RawSQL     string `json:"rawSql"`
				}
			}
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: a dashboard needs a uid, a title and panels", f)
		}
		for _, p := range d.Panels {
			if p.Datasource.UID != ds.UID || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q must query the provisioned datasource %q", f, p.Title, ds.UID)
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID != ds.UID {
					t.Errorf("%s: panel %q target uses datasource %q, want %q", f, p.Title, tg.Datasource.UID, ds.UID)
				}
				// Dashboards read ClickHouse's system tables or the tables
				// and views the warehouse migrations create.
				for _, m := range fromTable.FindAllStringSubmatch(tg.RawSQL, -1) {
					if name := m[1]; !strings.HasPrefix(name, "system.") && !warehouseTables[name] {
						t.Errorf("%s: panel %q reads %s, which is neither a system table nor created by deploy/clickhouse/migrations", f, p.Title, name)
					}
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Dockerfile

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	// Instructions only: drop comments and join continuation lines.
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(raw), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms []string
	var user, entrypoint string
	var built bool
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
			user = "" // USER applies per stage
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entrypoint = rest
		case "RUN":
			if strings.Contains(rest, "CGO_ENABLED=0") && strings.Contains(rest, "go build") && strings.Contains(rest, "./cmd/cdp") {
				built = true
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26-bookworm") {
		t.Errorf("want a multi-stage build starting FROM golang:1.26-bookworm, stages: %q", froms)
	}
	if !built {
		t.Error("no RUN builds ./cmd/cdp with CGO_ENABLED=0")
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
		t.Errorf("the final stage must run as a non-root USER, got %q", user)
	}
	if entrypoint != `["cdp"]` {
		t.Errorf(`ENTRYPOINT is %s, want ["cdp"]`, entrypoint)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

type k8sMeta struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

type k8sObject struct {
	File       string  `yaml:"-"`
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Data       map[string]string
	Spec       yaml.Node `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name    string
	Image   string
	Args    []string
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Env   []k8sEnvVar
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]any
		Limits   map[string]any
	}
}

// port resolves a probe or Service port (number or container port name).
func (c k8sContainer) port(p any) int {
	switch v := p.(type) {
	case int:
		return v
	case string:
		for _, cp := range c.Ports {
			if cp.Name == v {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

func (c k8sContainer) usesConfigMap(name string) bool {
	return slices.ContainsFunc(c.EnvFrom, func(e struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
	}) bool {
		return e.ConfigMapRef != nil && e.ConfigMapRef.Name == name
	})
}

type k8sEnvVar struct {
	Name      string
	Value     string
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

// envFromPodName reports whether the container's variable name is set from
// the downward API's metadata.name. Of several entries with one name the
// last one wins, as in Kubernetes.
func (c k8sContainer) envFromPodName(name string) bool {
	for _, e := range slices.Backward(c.Env) {
		if e.Name == name {
			return e.Value == "" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		}
	}
	return false
}

// k8sVarRefRE matches an argument that is exactly one $(VAR) reference,
// which Kubernetes expands from the container's environment.
var k8sVarRefRE = regexp.MustCompile(`^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$`)

// instanceFromPodName returns nil if `cdp run` in this container gets the
// pod name as its instance id: --instance=$(VAR) (or --instance $(VAR)) with
// VAR from metadata.name, or, without --instance, CDP_INSTANCE_ID from
// metadata.name. --instance takes precedence over CDP_INSTANCE_ID in `cdp`.
func (c k8sContainer) instanceFromPodName() error {
	for i, a := range c.Args {
		var v string
		switch {
		case a == "--instance" && i+1 < len(c.Args):
			v = c.Args[i+1]
		case strings.HasPrefix(a, "--instance="):
			v = strings.TrimPrefix(a, "--instance=")
		default:
			continue
		}
		m := k8sVarRefRE.FindStringSubmatch(v)
		if m == nil {
			return fmt.Errorf("--instance %q is not $(VAR) of a variable set from the pod name", v)
		}
		if !c.envFromPodName(m[1]) {
			return fmt.Errorf("--instance=$(%s), but env %s is not set from fieldRef metadata.name", m[1], m[1])
		}
		return nil
	}
	if !c.envFromPodName("CDP_INSTANCE_ID") {
		return errors.New("no --instance=$(VAR) and no env CDP_INSTANCE_ID from fieldRef metadata.name: the instance id would not be the pod name")
	}
	return nil
}

type k8sPodTemplate struct {
	Metadata k8sMeta
	Spec     struct {
		RestartPolicy                 string `yaml:"restartPolicy"`
		TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
		Containers                    []k8sContainer
	}
}

// selects reports whether a non-empty selector matches the labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// loadKubernetes parses every YAML document in deploy/kubernetes.
func loadKubernetes(t *testing.T) (files []string, objects []k8sObject) {
	t.Helper()
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		files = append(files, name)
		f, err := os.Open(filepath.Join(kubernetesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for i := 0; ; i++ {
			var obj k8sObject
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s document %d: %v", name, i, err)
				break
			}
			if obj.Kind == "" && obj.APIVersion == "" {
				continue // empty document
			}
			if obj.Kind == "" || obj.APIVersion == "" {
				t.Errorf("%s document %d: missing kind or apiVersion", name, i)
			}
			if obj.Kind != "Kustomization" && obj.Metadata.Name == "" {
				t.Errorf("%s document %d (%s): missing metadata.name", name, i, obj.Kind)
			}
			obj.File = name
			objects = append(objects, obj)
		}
		f.Close()
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", kubernetesDir)
	}
	return files, objects
}

func decodeSpec[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var spec T
	if err := o.Spec.Decode(&spec); err != nil {
		t.Fatalf("%s %s (%s): spec: %v", o.Kind, o.Metadata.Name, o.File, err)
	}
	return spec
}

func TestKubernetesManifests(t *testing.T) {
	files, objects := loadKubernetes(t)
	byKind := map[string][]k8sObject{}
	for _, o := range objects {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}

	// kustomization.yaml is what `kubectl apply -k` reads: a manifest left
	// out of it is silently never deployed.
	var kust struct {
		Namespace string
		Resources []string
		Images    []struct{ Name string }
	}
	raw, err := os.ReadFile(filepath.Join(kubernetesDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	t.Run("kustomization lists every manifest", func(t *testing.T) {
		for _, f := range files {
			if f != "kustomization.yaml" && !slices.Contains(kust.Resources, f) {
				t.Errorf("%s is not listed in kustomization.yaml resources", f)
			}
		}
		for _, r := range kust.Resources {
			if !slices.Contains(files, r) {
				t.Errorf("kustomization.yaml lists %s, which is not a manifest in %s", r, kubernetesDir)
			}
		}
		if len(byKind["Namespace"]) != 1 || byKind["Namespace"][0].Metadata.Name != kust.Namespace || kust.Namespace == "" {
			t.Errorf("want one Namespace named like kustomization's namespace %q", kust.Namespace)
		}
	})

	// The env ConfigMap.
	var cmName string
	t.Run("env configmap", func(t *testing.T) {
		for _, cm := range byKind["ConfigMap"] {
			if _, ok := cm.Data["CDP_KAFKA_BROKERS"]; ok {
				cmName = cm.Metadata.Name
				want := map[string]string{ // in-cluster services the user provides
					"CDP_KAFKA_BROKERS":       "kafka:",
					"CDP_SCHEMA_REGISTRY_URL": "http://schema-registry:",
					"CDP_REDIS_URL":           "redis://redis:",
					"CDP_CLICKHOUSE_DSN":      "clickhouse://clickhouse:",
					"CDP_TOPIC_PREFIX":        "",
				}
				for k, prefix := range want {
					v, ok := cm.Data[k]
					if !ok || v == "" || !strings.HasPrefix(v, prefix) {
						t.Errorf("ConfigMap %s: %s=%q, want a value starting %q", cmName, k, v, prefix)
					}
				}
				// One id shared by every pod would make them fence each other.
				if _, ok := cm.Data["CDP_INSTANCE_ID"]; ok {
					t.Errorf("ConfigMap %s sets CDP_INSTANCE_ID; the instance id must come from each pod's name", cmName)
				}
				checkWithConfigLoader(t, cm.Data)
			}
		}
		if cmName == "" {
			t.Fatal("no ConfigMap with the CDP_* environment")
		}
	})

	kustImage := ""
	if len(kust.Images) > 0 {
		kustImage = kust.Images[0].Name
	}
	checkContainer := func(t *testing.T, where string, c k8sContainer) {
		if cmName != "" && !c.usesConfigMap(cmName) {
			t.Errorf("%s: container does not load ConfigMap %s with envFrom", where, cmName)
		}
		if repo, _, _ := strings.Cut(c.Image, ":"); kustImage == "" || repo != kustImage {
			t.Errorf("%s: image %q is not the one kustomization.yaml retags (%q)", where, c.Image, kustImage)
		}
		for _, kind := range []string{"cpu", "memory"} {
			if c.Resources.Requests[kind] == nil || c.Resources.Limits[kind] == nil {
				t.Errorf("%s: %s request and limit must be set, got %+v", where, kind, c.Resources)
			}
		}
	}

	// The processors run as Deployments or StatefulSets. Every
	// consumer-group member must be a StatefulSet: its pod names are stable
	// and unique, and the pod name is the instance id (transactional id and
	// static group member id). A Deployment's pod names change on every
	// restart.
	consumers := consumerProcessors(t)
	type workloadSpec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		ServiceName         string `yaml:"serviceName"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		UpdateStrategy      struct {
			Type string
		} `yaml:"updateStrategy"`
		Template k8sPodTemplate
	}
	type workload struct {
		obj  k8sObject
		spec workloadSpec
	}
	workloads := map[string]workload{} // processor -> the one workload running it
	t.Run("workloads", func(t *testing.T) {
		var all []k8sObject
		all = append(all, byKind["Deployment"]...)
		all = append(all, byKind["StatefulSet"]...)
		for _, d := range all {
			where := fmt.Sprintf("%s %s (%s)", d.Kind, d.Metadata.Name, d.File)
			spec := decodeSpec[workloadSpec](t, d)
			for k, v := range spec.Selector.MatchLabels {
				if spec.Template.Metadata.Labels[k] != v {
					t.Errorf("%s: selector %s=%s does not match the pod labels", where, k, v)
				}
			}
			if len(spec.Selector.MatchLabels) == 0 {
				t.Errorf("%s: empty selector", where)
			}
			if len(spec.Template.Spec.Containers) != 1 {
				t.Errorf("%s: want one container, got %d", where, len(spec.Template.Spec.Containers))
				continue
			}
			c := spec.Template.Spec.Containers[0]
			if len(c.Args) < 2 || c.Args[0] != "run" || !slices.Contains(processors, c.Args[1]) {
				t.Errorf("%s: args %q, want [run <processor> ...]", where, c.Args)
				continue
			}
			if w, dup := workloads[c.Args[1]]; dup {
				t.Errorf("%s: %s %s runs %s already", where, w.obj.Kind, w.obj.Metadata.Name, c.Args[1])
			}
			workloads[c.Args[1]] = workload{d, spec}
			for _, p := range []struct {
				name  string
				probe *k8sProbe
				path  string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s: no %s httpGet probe", where, p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path || c.port(p.probe.HTTPGet.Port) != 9100 {
					t.Errorf("%s: %s probe on %s port %v, want %s on 9100", where, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path)
				}
			}
			if c.port("metrics") != 9100 && !slices.ContainsFunc(c.Ports, func(p struct {
				Name          string
				ContainerPort int `yaml:"containerPort"`
			}) bool {
				return p.ContainerPort == 9100
			}) {
				t.Errorf("%s: container port 9100 is not declared", where)
			}
			ann := spec.Template.Metadata.Annotations
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9100" || ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: pod needs prometheus.io scrape/port/path annotations for /metrics on 9100, got %v", where, ann)
			}
			checkContainer(t, where, c)
		}
		for _, p := range processors {
			if _, ok := workloads[p]; !ok {
				t.Errorf("no Deployment or StatefulSet runs `cdp run %s`", p)
			}
		}
	})

	t.Run("consumer-group processors are StatefulSets", func(t *testing.T) {
		for _, p := range consumers {
			w, ok := workloads[p]
			if !ok {
				continue // reported by "workloads"
			}
			where := fmt.Sprintf("%s %s (%s)", w.obj.Kind, w.obj.Metadata.Name, w.obj.File)
			if w.obj.Kind != "StatefulSet" {
				t.Errorf("%s runs consumer-group processor %s: it must be a StatefulSet, whose pod names are stable, unique instance ids (a %s's change on every restart)",
					where, p, w.obj.Kind)
			}
			if err := w.spec.Template.Spec.Containers[0].instanceFromPodName(); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			// SIGTERM finishes the batch in flight and commits it.
			grace := 30 * time.Second // Kubernetes' default
			if g := w.spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			if want := runtimeBatchTimeout + minShutdownSlack; grace < want {
				t.Errorf("%s: terminationGracePeriodSeconds %v, want at least %v (the runtime's %v batch bound plus the commit)", where, grace, want, runtimeBatchTimeout)
			}
			if w.obj.Kind != "StatefulSet" {
				continue
			}
			if w.spec.PodManagementPolicy != "Parallel" {
				t.Errorf("%s: podManagementPolicy %q, want Parallel (instances do not depend on each other; scale in one step, one rebalance)", where, w.spec.PodManagementPolicy)
			}
			if w.spec.UpdateStrategy.Type != "RollingUpdate" {
				t.Errorf("%s: updateStrategy.type %q, want RollingUpdate (OnDelete never rolls out a new version by itself)", where, w.spec.UpdateStrategy.Type)
			}
			// A StatefulSet needs its governing Service to exist and be
			// headless; it names the pods' DNS domain.
			if w.spec.ServiceName == "" {
				t.Errorf("%s: no serviceName", where)
				continue
			}
			found := false
			for _, s := range byKind["Service"] {
				if s.Metadata.Name != w.spec.ServiceName {
					continue
				}
				found = true
				spec := decodeSpec[struct {
					ClusterIP string `yaml:"clusterIP"`
					Selector  map[string]string
				}](t, s)
				if spec.ClusterIP != "None" {
					t.Errorf("Service %s (%s), serviceName of %s: clusterIP %q, want None (headless)", s.Metadata.Name, s.File, where, spec.ClusterIP)
				}
				if !selects(spec.Selector, w.spec.Template.Metadata.Labels) {
					t.Errorf("Service %s (%s) selector %v does not select the pods of %s (labels %v)", s.Metadata.Name, s.File, spec.Selector, where, w.spec.Template.Metadata.Labels)
				}
			}
			if !found {
				t.Errorf("%s: serviceName %q, but no Service of that name is deployed", where, w.spec.ServiceName)
			}
		}
	})

	t.Run("api service", func(t *testing.T) {
		w, ok := workloads["api"]
		if !ok {
			t.Fatal("no api workload")
		}
		apiPod := &w.spec.Template
		found := false
		for _, s := range byKind["Service"] {
			spec := decodeSpec[struct {
				ClusterIP string `yaml:"clusterIP"`
				Selector  map[string]string
				Ports     []struct {
					Port       int
					TargetPort any `yaml:"targetPort"`
				}
			}](t, s)
			if spec.ClusterIP == "None" || !selects(spec.Selector, apiPod.Metadata.Labels) {
				continue
			}
			for _, p := range spec.Ports {
				target := p.TargetPort
				if target == nil {
					target = p.Port
				}
				if p.Port == 8080 && apiPod.Spec.Containers[0].port(target) == 8080 {
					found = true
				}
			}
		}
		if !found {
			t.Error("no (non-headless) Service selects the api pods on port 8080 -> container port 8080")
		}
	})
	t.Run("topology job", func(t *testing.T) {
		found := false
		for _, j := range byKind["Job"] {
			spec := decodeSpec[struct{ Template k8sPodTemplate }](t, j)
			cs := spec.Template.Spec.Containers
			if len(cs) != 1 || !slices.Equal(cs[0].Args, []string{"topology", "apply"}) {
				continue
			}
			found = true
			if rp := spec.Template.Spec.RestartPolicy; rp != "OnFailure" && rp != "Never" {
				t.Errorf("Job %s: restartPolicy %q, a Job needs OnFailure or Never", j.Metadata.Name, rp)
			}
			checkContainer(t, "Job "+j.Metadata.Name, cs[0])
		}
		if !found {
			t.Error("no Job runs `cdp topology apply`")
		}
	})
}
