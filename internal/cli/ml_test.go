package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMLDatasetsDir(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	sub := filepath.Join(repo, "internal", "x")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	t.Setenv("CDP_DATASETS", "")
	for _, c := range []struct {
		flag, env, want string
	}{
		{"/data/flag", "/data/env", "/data/flag"},
		{"", "/data/env", "/data/env"},
		{"", "", filepath.Join(root, "shared", "datasets")}, // ../shared/datasets from the repository root
	} {
		t.Setenv("CDP_DATASETS", c.env)
		got, err := mlDatasetsDir(c.flag)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Clean(got) != filepath.Clean(c.want) {
			t.Errorf("flag %q env %q: %s, want %s", c.flag, c.env, got, c.want)
		}
	}
}

func runCDP(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestMLEvalErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ml", "eval", "--datasets", filepath.Join(t.TempDir(), "none")}, "does not exist"},
		{[]string{"ml", "eval", "--datasets", t.TempDir(), "--format", "xml"}, "want text or json"},
		{[]string{"ml", "eval", "--datasets", t.TempDir(), "--only", "bogus"}, `unknown evaluation "bogus"`},
		{[]string{"ml", "eval", "--datasets", t.TempDir(), "--only", "clv"}, "CDNOW sample is not at"},
	} {
		_, err := runCDP(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cdp %s: error %v, want one containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestMLEvalCDNOW runs the quick CDNOW evaluations through the command when
// the real data is there (it is not copied into the repository).
func TestMLEvalCDNOW(t *testing.T) {
	dir := os.Getenv("CDP_DATASETS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "datasets")
	}
	if _, err := os.Stat(filepath.Join(dir, "cdnow", "CDNOW_sample.txt")); err != nil {
		t.Skipf("the CDNOW sample is not under %s (set CDP_DATASETS): %v", dir, err)
	}
	md := filepath.Join(t.TempDir(), "report.md")
	out, err := runCDP(t, "ml", "eval", "--datasets", dir, "--only", "clv,churn", "--format", "json", "--out", md)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Ran   []string `json:"evaluations"`
		CDNOW struct {
			Customers int `json:"customers"`
			BGNBD     struct{ R, Alpha, A, B float64 }
		} `json:"cdnow"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out)
	}
	if strings.Join(rep.Ran, ",") != "clv,churn" || rep.CDNOW.Customers != 2357 || rep.CDNOW.BGNBD.R <= 0 {
		t.Errorf("report %+v", rep)
	}
	b, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(b), "#### BG/NBD fit") {
		t.Errorf("Markdown report: %v\n%s", err, b)
	}
}
