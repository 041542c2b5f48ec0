package registrytest_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/registrytest"
)

func TestStartAnswersV2(t *testing.T) {
	for _, flavor := range registrytest.Flavors() {
		t.Run(flavor, func(t *testing.T) {
			addr := registrytest.Start(t, flavor)
			resp, err := http.Get("http://" + addr + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v2/: %s", resp.Status)
			}
		})
	}
}

func TestBinaryUnknownFlavor(t *testing.T) {
	if _, err := registrytest.Binary("zot"); err == nil {
		t.Fatal("unknown flavor accepted")
	}
}

func TestBinaryMissingNamesInstall(t *testing.T) {
	t.Setenv("UPKIT_OLAREG_BIN", "")
	t.Setenv("UPKIT_TOOLS_DIR", t.TempDir())
	_, err := registrytest.Binary(registrytest.OLAReg)
	if err == nil {
		t.Fatal("missing olareg not reported")
	}
	if want := "scripts/test-deps.sh olareg"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
}

// fatalRecorder records Fatal instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper()                   {}
func (f *fatalRecorder) Fatal(args ...any)         { f.msg = fmt.Sprint(args...) }
func (f *fatalRecorder) Fatalf(s string, a ...any) { f.msg = fmt.Sprintf(s, a...) }

// A missing registry fails the test, naming what to install; it never skips.
func TestStartFailsWhenMissing(t *testing.T) {
	t.Setenv("UPKIT_OLAREG_BIN", "")
	t.Setenv("UPKIT_TOOLS_DIR", t.TempDir())
	rec := &fatalRecorder{TB: t}
	if addr := registrytest.Start(rec, registrytest.OLAReg); addr != "" {
		t.Fatalf("Start returned %q without a binary", addr)
	}
	if !strings.Contains(rec.msg, "scripts/test-deps.sh olareg") {
		t.Fatalf("Start failed with %q", rec.msg)
	}
	t.Setenv("UPKIT_DISTRIBUTION_BIN", filepath.Join(t.TempDir(), "nope"))
	rec = &fatalRecorder{TB: t}
	registrytest.Start(rec, registrytest.Distribution)
	if !strings.Contains(rec.msg, "UPKIT_DISTRIBUTION_BIN") {
		t.Fatalf("Start failed with %q", rec.msg)
	}
}
