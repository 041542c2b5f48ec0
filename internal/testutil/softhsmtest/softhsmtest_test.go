package softhsmtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	module := NewToken(t, "first", "1234")
	conf := os.Getenv("SOFTHSM2_CONF")
	if !strings.HasPrefix(conf, os.TempDir()) {
		t.Fatalf("SOFTHSM2_CONF=%q is not in a temporary directory", conf)
	}
	if again := NewToken(t, "second", "5678"); again != module {
		t.Fatalf("module %s, then %s", module, again)
	}
	if got := os.Getenv("SOFTHSM2_CONF"); got != conf {
		t.Fatalf("second token moved SOFTHSM2_CONF from %s to %s", conf, got)
	}
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
	}
	for _, label := range []string{"first", "second"} {
		if !strings.Contains(string(out), "Label:            "+label) {
			t.Errorf("token %q not in --show-slots:\n%s", label, out)
		}
	}
}
