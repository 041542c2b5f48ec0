// Package registrytest starts real OCI registries on loopback for tests.
//
// Each call to Start runs a fresh registry process (its own port and its own
// storage in t.TempDir()) and registers a cleanup that stops it. Two flavors
// exist:
//
//   - Distribution: CNCF distribution 2.8 from the Debian package
//     docker-registry. It answers 404 to the referrers API, so clients use
//     the "sha256-<hex>" fallback tag scheme.
//   - OLAReg: github.com/olareg/olareg, an OCI 1.1 registry that serves the
//     referrers API.
//
// StartWithAuth runs a distribution registry that requires basic
// authentication (htpasswd), to test credentials from the docker config.
//
// When a binary is missing the test FAILS (it never skips) with a message
// naming the command that installs it; scripts/test-deps.sh (which `make
// test` runs first) provides both. The binaries are looked up as
// scripts/registry.sh does: $UPKIT_DISTRIBUTION_BIN or docker-registry on
// $PATH (or /usr/bin), and olareg where internal/testutil/testtools finds it
// ($UPKIT_OLAREG_BIN, or the tools cache at the version of scripts/tools.txt).
package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/upkit/upkit/internal/testutil/testtools"
)

// Registry flavors accepted by Start.
const (
	Distribution = "distribution"
	OLAReg       = "olareg"
)

// Flavors lists every flavor, for table tests that run against each.
func Flavors() []string { return []string{Distribution, OLAReg} }

// startTimeout bounds how long a registry may take to answer GET /v2/.
const startTimeout = 20 * time.Second

// Binary returns the path of the registry binary for flavor, or an error
// whose message names what to install.
func Binary(flavor string) (string, error) {
	switch flavor {
	case Distribution:
		if p := os.Getenv("UPKIT_DISTRIBUTION_BIN"); p != "" {
			return executable(p, "UPKIT_DISTRIBUTION_BIN")
		}
		if p, err := exec.LookPath("docker-registry"); err == nil {
			return p, nil
		}
		if p, err := executable("/usr/bin/docker-registry", ""); err == nil {
			return p, nil
		}
		return "", errors.New("registrytest: docker-registry (CNCF distribution) not found: " +
			"install it with `scripts/test-deps.sh docker-registry` (apt-get install docker-registry)")
	case OLAReg:
		p, err := testtools.Path("olareg")
		if err != nil {
			return "", fmt.Errorf("registrytest: %w", err)
		}
		return p, nil
	default:
		return "", fmt.Errorf("registrytest: unknown flavor %q (want %q or %q)", flavor, Distribution, OLAReg)
	}
}

func executable(p, env string) (string, error) {
	fi, err := os.Stat(p)
	if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	if env != "" {
		return "", fmt.Errorf("registrytest: $%s=%s is not an executable file", env, p)
	}
	return "", fmt.Errorf("registrytest: %s is not an executable file", p)
}

// StartWithAuth is Start for a distribution registry that requires HTTP
// basic authentication (htpasswd) as user with password: what a client
// without credentials gets is a 401 with a Basic challenge, as from a real
// private registry. Only the Distribution flavor supports it (olareg has
// no authentication).
func StartWithAuth(t testing.TB, flavor, user, password string) (addr string) {
	t.Helper()
	if flavor != Distribution {
		t.Fatalf("registrytest: %s has no authentication; use %s", flavor, Distribution)
		return ""
	}
	bin, err := Binary(flavor)
	if err != nil {
		t.Fatal(err)
		return ""
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
		return ""
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
		return ""
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := start(t, flavor, bin, htpasswd)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("registrytest: starting %s registry: %v", flavor, lastErr)
	return ""
}

// Start starts a fresh registry of the given flavor on 127.0.0.1 and returns
// its "127.0.0.1:PORT" address once GET /v2/ answers. The registry is
// stopped and its storage removed when the test ends. Start fails the test
// (t.Fatal) if the binary is missing or the registry does not come up.
func Start(t testing.TB, flavor string) (addr string) {
	t.Helper()
	bin, err := Binary(flavor)
	if err != nil {
		t.Fatal(err)
		return ""
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := start(t, flavor, bin, "")
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("registrytest: starting %s registry: %v", flavor, lastErr)
	return ""
}

// lockedBuffer collects the registry's output for error messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the head; enough to diagnose
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs one registry; htpasswd, if set, turns on basic auth.
func start(t testing.TB, flavor, bin, htpasswd string) (string, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", err
	}
	var args []string
	switch flavor {
	case Distribution:
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(distributionConfig(data, addr, htpasswd)), 0o644); err != nil {
			return "", err
		}
		args = []string{"serve", cfg}
	case OLAReg:
		args = []string{"serve", "--addr", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", data,
			"--api-delete", "--api-blob-delete"}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setParentDeath(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if answers(ctx, addr) {
			t.Cleanup(stop)
			t.Logf("registrytest: %s registry (pid %d) at http://%s/v2/", flavor, cmd.Process.Pid, addr)
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("%s exited at start: %s", bin, tail(out.String()))
		case <-ctx.Done():
			stop()
			return "", fmt.Errorf("%s did not answer at http://%s/v2/ within %s: %s",
				bin, addr, startTimeout, tail(out.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func distributionConfig(data, addr, htpasswd string) string {
	auth := ""
	if htpasswd != "" {
		auth = `auth:
  htpasswd:
    realm: upkit-test
    path: ` + htpasswd + `
`
	}
	return auth + `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ` + data + `
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ` + addr + `
  secret: upkit-throwaway-test-registry
`
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func answers(ctx context.Context, addr string) bool {
	probeClient := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
