package localstack

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
)

// The ClickHouse engine is pinned: a new version is a deliberate change,
// checked against this digest of the npm tarball.
const (
	CHDBPackage = "@chdb/lib-linux-x64-gnu"
	CHDBVersion = "26.7.3-stable.1"
	chdbSHA256  = "c0d32b129e988f2b9a9a31c9141aecf5e1e2453f9a079efc4d36ab8e3f92b2ad"
)

// CacheDir is where downloaded engines are kept across stacks and clones:
// $CDP_CACHE_DIR, else $XDG_CACHE_HOME/streamcdp, else ~/.cache/streamcdp.
func CacheDir() string {
	if d := os.Getenv("CDP_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "streamcdp")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "streamcdp-cache")
	}
	return filepath.Join(home, ".cache", "streamcdp")
}

// CHDBLibraryPath is where EnsureCHDB puts libchdb.so.
func CHDBLibraryPath(cache string) string {
	return filepath.Join(cache, "chdb", CHDBVersion, "libchdb.so")
}

// EnsureCHDB makes sure the pinned ClickHouse engine is in the cache and
// returns the library's path. The first call fetches the package with the
// npm client (npm pack), checks its SHA-256 and unpacks libchdb.so with a
// progress bar on w; later calls return at once.
func EnsureCHDB(ctx context.Context, cache string, w io.Writer) (string, error) {
	lib := CHDBLibraryPath(cache)
	if _, err := os.Stat(lib); err == nil {
		return lib, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("npm is not installed; it fetches the ClickHouse engine: apt-get install npm")
	}
	dir := filepath.Dir(lib)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return "", fmt.Errorf("creating download dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(w, "fetching %s@%s (about 180 MB) with npm ...\n", CHDBPackage, CHDBVersion)
	cmd := exec.CommandContext(ctx, npm, "pack", "--silent", CHDBPackage+"@"+CHDBVersion, "--pack-destination", tmp)
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("npm pack %s@%s: %w\n%s", CHDBPackage, CHDBVersion, err, out)
	}
	tgz := filepath.Join(tmp, strings.TrimSpace(lastLine(string(out))))
	if _, err := os.Stat(tgz); err != nil {
		matches, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
		if len(matches) != 1 {
			return "", fmt.Errorf("npm pack left no tarball in %s (output: %s)", tmp, out)
		}
		tgz = matches[0]
	}
	if err := checkSHA256(tgz, chdbSHA256); err != nil {
		return "", err
	}
	if err := extractFile(tgz, "package/libchdb.so", lib, w); err != nil {
		return "", err
	}
	return lib, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func checkSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("checksum mismatch for %s: got sha256 %s, want %s (the download is corrupt or the package changed; refusing to use it)", filepath.Base(path), got, want)
	}
	return nil
}

// extractFile copies one member of a .tgz to dst (atomically, via rename),
// showing the bytes written.
func extractFile(tgz, member, dst string, w io.Writer) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s has no %s", filepath.Base(tgz), member)
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", tgz, err)
		}
		if hdr.Name != member {
			continue
		}
		tmp := dst + ".part"
		out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		bar := progressbar.NewOptions64(hdr.Size,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("unpacking libchdb.so"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(200*1e6),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		if _, err := io.Copy(io.MultiWriter(out, bar), tr); err != nil {
			out.Close()
			return fmt.Errorf("unpacking %s: %w", member, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	}
}

// AptPackages are the Debian packages the stack and its tests use:
// redis-server runs Redis; kcat and redis-cli let tests check that
// third-party clients work; docker-compose validates docker-compose.yml;
// chromium runs the console page's browser test (headless, via chromedp).
var AptPackages = map[string]string{
	"redis-server":   "redis-server",
	"redis-cli":      "redis-tools",
	"kcat":           "kcat",
	"docker-compose": "docker-compose",
	"chromium":       "chromium",
}

// EnsureAptPackages installs the Debian packages whose commands are missing.
// It needs root (or sudo without a password).
func EnsureAptPackages(ctx context.Context, w io.Writer) error {
	var missing []string
	for cmd, pkg := range AptPackages {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(w, "installing Debian packages: %s\n", strings.Join(missing, " "))
	prefix := []string{}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("missing packages %s and not root: run as root: apt-get install -y %s", strings.Join(missing, " "), strings.Join(missing, " "))
		}
		prefix = []string{"sudo"}
	}
	run := func(args ...string) error {
		full := append(append([]string{}, prefix...), args...)
		cmd := exec.CommandContext(ctx, full[0], full[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(full, " "), err, tail(string(out), 20))
		}
		return nil
	}
	// Waiting for the dpkg lock avoids failing when another apt runs.
	lock := "-o=DPkg::Lock::Timeout=300"
	if err := run("apt-get", lock, "update", "-q"); err != nil {
		return err
	}
	return run(append([]string{"apt-get", lock, "install", "-y", "-q", "--no-install-recommends"}, missing...)...)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
