package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeMachine is a Machine whose "QEMU" is a shell script: it reads the
// console commands on its standard input and answers on its output, as
// the guest's init would.
func fakeMachine(t *testing.T, script string) *Machine {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := &Machine{dev: &Device{ConsoleLog: log.Name()}, changed: make(chan struct{}), done: make(chan struct{}), log: log}
	if err := m.launch(exec.Command("sh", "-c", script)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// TestPowerOff: a guest that powers off ends QEMU; one whose kernel halts
// (no ACPI) is taken as off and QEMU is stopped, which the console log
// says; one that does neither is an error naming it.
func TestPowerOff(t *testing.T) {
	for _, tt := range []struct {
		name, onPoweroff string
		wantErr, wantLog string
	}{
		{"powers off", "echo 'UPKIT-E2E powering-off'; exit 0", "", ""},
		{"halts", "echo 'UPKIT-E2E powering-off'; echo '[    3.036994] reboot: System halted'; exec sleep 60", "", "halted instead of powering off"},
		{"neither", "echo 'UPKIT-E2E powering-off'; exec sleep 60", "did not power off", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := fakeMachine(t, `while read -r l; do [ "$l" = "@e2e poweroff" ] && { `+tt.onPoweroff+`; }; done`)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := m.PowerOff(ctx)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("PowerOff: %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" {
				return
			}
			if !m.Exited() {
				t.Fatal("QEMU still runs after PowerOff")
			}
			log, _ := os.ReadFile(m.dev.ConsoleLog)
			if got := strings.Contains(string(log), "halted instead of powering off"); got != (tt.wantLog != "") {
				t.Errorf("console log says the harness stopped a halted kernel: %v, want %v:\n%s", got, tt.wantLog != "", log)
			}
		})
	}
}
