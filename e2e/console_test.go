package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		line string
		want Marker
		ok   bool
	}{
		{"UPKIT-E2E boot release=1.0.0 slot=A root=/dev/vda2 tpm=yes stick=no uptime=3.96",
			Marker{Event: "boot", Text: "release=1.0.0 slot=A root=/dev/vda2 tpm=yes stick=no uptime=3.96",
				Fields: map[string]string{"release": "1.0.0", "slot": "A", "root": "/dev/vda2", "tpm": "yes", "stick": "no", "uptime": "3.96"}}, true},
		// GRUB clears the screen on the same line, OVMF sets modes.
		{"\x1b[0m\x1b[37m\x1b[40m\x1b[H\x1b[J\x1b[1;1HUPKIT-E2E grub-start env=(hd0,gpt1)/EFI/BOOT/grubenv\r",
			Marker{Event: "grub-start", Text: "env=(hd0,gpt1)/EFI/BOOT/grubenv",
				Fields: map[string]string{"env": "(hd0,gpt1)/EFI/BOOT/grubenv"}}, true},
		{`UPKIT-E2E grub-chose slot=B order="B A" a_ok=1`,
			Marker{Event: "grub-chose", Text: `slot=B order="B A" a_ok=1`,
				Fields: map[string]string{"slot": "B", "order": "B A", "a_ok": "1"}}, true},
		{"UPKIT-E2E out id=7 | a=b | c",
			Marker{Event: "out", Text: "a=b | c", Fields: map[string]string{"id": "7"}}, true},
		{"UPKIT-E2E out id=7 |", Marker{Event: "out", Text: "", Fields: map[string]string{"id": "7"}}, true},
		{"UPKIT-E2E ready", Marker{Event: "ready", Fields: map[string]string{}}, true},
		{"UPKIT-E2E done id=1 rc=0 rc=2", Marker{Event: "done", Text: "id=1 rc=0 rc=2", Fields: map[string]string{"id": "1", "rc": "0"}}, true},
		{"[    2.89] ima: Can not allocate sha384", Marker{}, false},
		{"UPKIT-E2E ", Marker{}, false},
		{"UPKIT-E2E slot=A", Marker{}, false},
		{"upkit-e2e boot", Marker{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseMarker(tt.line)
		if ok != tt.ok || ok && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMarker(%q) = %#v, %v; want %#v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCleanLine(t *testing.T) {
	got := CleanLine("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\x00\x07")
	if want := "BdsDxe: loading Boot0001"; got != want {
		t.Errorf("CleanLine = %q, want %q", got, want)
	}
	long := strings.Repeat("x", MaxLine+10)
	if got := CleanLine(long); len(got) != MaxLine {
		t.Errorf("CleanLine of %d bytes kept %d, want %d", len(long), len(got), MaxLine)
	}
}

func TestPhase(t *testing.T) {
	mk := func(event string) Line { return Line{Marker: &Marker{Event: event}} }
	tests := []struct {
		lines []Line
		want  string
	}{
		{nil, "firmware"},
		{[]Line{{Text: "BdsDxe: loading Boot0001"}}, "firmware"},
		{[]Line{mk("grub-start")}, "grub"},
		{[]Line{mk("uboot-start"), {Text: "upkit: slot A, 3 attempts left"}}, "uboot"},
		{[]Line{mk("grub-start"), mk("grub-chose")}, "grub"},
		{[]Line{mk("grub-start"), mk("grub-chose"), {Text: "  Booting `Slot B (OK=1 TRY=1)'"}, {Text: "[ 0.1] Linux"}}, "kernel"},
		{[]Line{mk("uboot-chose"), {Text: "Starting kernel ..."}}, "kernel"},
		{[]Line{mk("grub-chose"), mk("init")}, "init"},
		{[]Line{mk("boot"), mk("ready")}, "running"},
		{[]Line{mk("ready"), mk("rebooting")}, "firmware"},
		{[]Line{mk("ready"), mk("powering-off")}, "off"},
	}
	for _, tt := range tests {
		if got := phaseOf(tt.lines); got != tt.want {
			t.Errorf("phaseOf(%v) = %q, want %q", tt.lines, got, tt.want)
		}
	}
}

func TestAgentPhase(t *testing.T) {
	mk := func(event string) Line { return Line{Marker: &Marker{Event: event}} }
	out := func(text string) Line {
		l := Line{Text: "UPKIT-E2E out id=3 | " + text}
		m, _ := ParseMarker(l.Text)
		l.Marker = &m
		return l
	}
	raw := func(text string) Line { return Line{Text: text} }
	install := []Line{mk("ready"), out("upkit-agent: check: /mnt/stick")}
	tests := []struct {
		lines []Line
		want  string
	}{
		{[]Line{mk("grub-start"), mk("init")}, "init"},
		{install, "download"},
		{append(install, out("upkit-agent: fetch: rootfs 1 of 9 (11%)")), "download"},
		{append(install, out("upkit-agent: write: rootfs 1 of 9 (11%)")), "slot-write"},
		{append(install, out("upkit-agent: write: rootfs 9 of 9"), out("upkit-agent: verify: rootfs 1 of 9")), "slot-write"},
		{append(install, out("upkit-agent: installed: rootfs 2.0.0")), "slot-write"},
		{append(install, out("upkit-agent: activate: slot B boots next")), "activation"},
		{append(install, out("upkit-agent: reboot: /usr/lib/upkit-e2e/reboot")), "reboot"},
		{append(install, out("upkit-agent: reboot: /usr/lib/upkit-e2e/reboot"), mk("rebooting"), mk("grub-start")), "reboot"},
		{[]Line{mk("init"), raw("upkit-agent: boot: booted slot B (trial-booted)")}, "commit"},
		{[]Line{mk("init"), raw("upkit-agent: boot: booted slot B"), raw("upkit-agent: health: passed"), raw("upkit-agent: verify: rootfs 1 of 9")}, "commit"},
		{[]Line{mk("init"), raw("upkit-agent: commit: release 2 committed"), mk("agent-boot")}, "done"},
		{[]Line{raw("upkit-agent: health: /usr/lib/upkit-e2e/health: exit status 1"), raw("upkit-agent: reboot: x"), mk("rebooting"), mk("grub-chose")}, "reboot"},
		{[]Line{raw("upkit-agent: boot: booted slot A (normal)"), mk("grub-start")}, "reboot"},
	}
	for _, tt := range tests {
		if got := agentPhaseOf(tt.lines); got != tt.want {
			t.Errorf("agentPhaseOf(%v) = %q, want %q", tt.lines, got, tt.want)
		}
	}
}

func TestDiskTrouble(t *testing.T) {
	for _, tt := range []struct {
		lines []Line
		want  string
	}{
		{nil, ""},
		{[]Line{{Text: "UPKIT-E2E boot release=1.0.0 slot=A"}, {Text: "nvme nvme0: 1/0/0 default/read/poll queues"}}, ""},
		{[]Line{{Text: "stuck: kmsg: [   32.206128] nvme nvme0: I/O 635 (I/O Cmd) QID 1 timeout, aborting"}},
			"nvme nvme0: I/O 635 (I/O Cmd) QID 1 timeout, aborting"},
		{[]Line{{Text: "x"}, {Text: "problem: kmsg: [   64.708370] nvme nvme0: I/O 192 QID 1 timeout, reset controller"}},
			"nvme nvme0: I/O 192 QID 1 timeout, reset controller"},
		{[]Line{{Text: "problem: kmsg: [    9.1] I/O error, dev vda, sector 133120 op 0x0:(READ) flags 0x80700"}},
			"I/O error, dev vda, sector 133120 op 0x0:(READ) flags 0x80700"},
	} {
		if got := diskTrouble(tt.lines); got != tt.want {
			t.Errorf("diskTrouble(%v) = %q, want %q", tt.lines, got, tt.want)
		}
	}
}

func TestBootTimings(t *testing.T) {
	b := Boot{Loader: "grub", Begin: 2 * time.Second, LoaderAt: 7 * time.Second, ChoseAt: 7500 * time.Millisecond,
		KernelAt: 10 * time.Second, InitAt: 15 * time.Second, ReadyAt: 15500 * time.Millisecond}
	if got, want := b.Timings(), "13.5 s: firmware 5.0, grub 3.0, kernel 5.0, init 0.5"; got != want {
		t.Errorf("Timings = %q, want %q", got, want)
	}
	b.KernelAt = 0 // no "Booting" line seen: the bootloader's time ends at its choice
	if got, want := b.Timings(), "13.5 s: firmware 5.0, grub 0.5, kernel 7.5, init 0.5"; got != want {
		t.Errorf("Timings = %q, want %q", got, want)
	}
}

func FuzzParseMarker(f *testing.F) {
	for _, s := range []string{
		"UPKIT-E2E boot release=1.0.0 slot=A tpm=yes",
		`UPKIT-E2E grub-chose slot=B order="B A"`,
		"\x1b[H\x1b[JUPKIT-E2E out id=3 | x=y",
		"UPKIT-E2E done id=1 rc=0",
		"UPKIT-E2E \"=\" ==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := ParseMarker(line)
		if !ok {
			return
		}
		if m.Event == "" || strings.ContainsAny(m.Event, " =\t") {
			t.Fatalf("event %q from %q", m.Event, line)
		}
		clean := CleanLine(line)
		after := clean[strings.Index(clean, MarkerPrefix)+len(MarkerPrefix):]
		if strings.Fields(after)[0] != m.Event {
			t.Fatalf("event %q is not the word after the prefix in %q", m.Event, line)
		}
		for k := range m.Fields {
			if k == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("field name %q from %q", k, line)
			}
		}
		if len(m.Text) > MaxLine {
			t.Fatalf("text of %d bytes", len(m.Text))
		}
	})
}

func TestAgentSummary(t *testing.T) {
	for _, tt := range []struct {
		b    Boot
		want string
	}{
		{Boot{AgentRC: -1}, ""},
		{Boot{AgentRC: 0}, "; the agent exited 0"},
		{Boot{AgentRC: 1, Problems: "esp", AgentLog: []string{"a", "b", "c", "d", "error: x"}},
			"; init's problems: esp; the agent exited 1 after: b | c | d | error: x"},
	} {
		if got := tt.b.agentSummary(); got != tt.want {
			t.Errorf("agentSummary(%+v) = %q, want %q", tt.b, got, tt.want)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if got := tailFile(path, 3); !strings.Contains(got, "no such file") {
		t.Errorf("tailFile of a missing file = %q, want the error", got)
	}
	var b strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := tailFile(path, 3), "line 8\nline 9\nline 10"; got != want {
		t.Errorf("tailFile(3) = %q, want %q", got, want)
	}
	if got := tailFile(path, 50); !strings.HasPrefix(got, "line 1\n") {
		t.Errorf("tailFile(50) = %q, want all 10 lines", got)
	}
}
