package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxLines bounds the console lines a Machine keeps in memory (the log
// file gets them all).
const maxLines = 200000

// Line is one console line, cleaned (see CleanLine), with the time since
// the machine started.
type Line struct {
	At     time.Duration
	Text   string
	Marker *Marker
}

// Machine is one run of QEMU (and its swtpm) on a Device, from Start
// until it powers off, or is cut (Cut) or stopped (Stop). A reboot from
// inside the guest stays in the same Machine.
type Machine struct {
	dev     *Device
	qemu    *exec.Cmd
	swtpm   *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	stderr  bytes.Buffer // QEMU's own messages

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced on every new line or exit
	exited  bool
	exitErr error
	cursor  int // WaitBoot's position in lines
	nextID  int
	log     *os.File
	logMu   sync.Mutex
	done    chan struct{} // closed when QEMU has exited and its output is read
}

// qemuArgs returns QEMU's command line for the device.
func (d *Device) qemuArgs(tpmSock string) []string {
	args := []string{
		"-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
		"-serial", "stdio",
	}
	switch d.Firmware {
	case GRUB:
		// No SMM: Debian's OVMF_CODE_4M.fd does not need it (the secboot build
		// does), and emulating it costs time under TCG.
		args = append(args, "-machine", "q35,smm=off",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+filepath.Join(d.Images.Dir, "OVMF_CODE.fd"),
			"-drive", "if=pflash,format=raw,unit=1,file="+d.Vars)
	case UBoot:
		args = append(args, "-machine", "pc",
			"-bios", filepath.Join(d.Images.Dir, "u-boot.rom"),
			"-drive", "if=ide,index=0,format=raw,file="+d.BootFlash)
	}
	// virtio-blk: booted by OVMF, read by U-Boot, loaded by the initramfs
	// (a module of Debian's cloud kernel). Not NVMe, which the kernel has
	// built in: QEMU 7.2's NVMe emulation now and then stops completing
	// commands (docs/E2E.md, "Why virtio-blk"). The system disk comes
	// first, so it is GRUB's hd0, U-Boot's virtio 0 and the kernel's vda.
	args = append(args,
		"-drive", "if=none,id=disk,format=raw,file="+d.Disk,
		"-device", "virtio-blk-pci,drive=disk,serial=upkit-disk,bootindex=0")
	if d.Stick != "" {
		args = append(args,
			"-drive", "if=none,id=stick,format=raw,readonly=on,file="+d.Stick,
			"-device", "virtio-blk-pci,drive=stick,serial=upkit-stick")
	}
	tpmDevice := "tpm-crb"
	if d.Firmware == UBoot {
		tpmDevice = "tpm-tis"
	}
	args = append(args,
		"-chardev", "socket,id=chrtpm,path="+tpmSock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", tpmDevice+",tpmdev=tpm0")
	return args
}

// Start powers the device on: swtpm on the device's TPM state, then QEMU
// on its disks, with the serial console on QEMU's standard input and
// output.
func (d *Device) Start(ctx context.Context) (*Machine, error) {
	d.starts++
	m := &Machine{dev: d, changed: make(chan struct{}), done: make(chan struct{})}
	log, err := os.OpenFile(d.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	m.log = log
	fmt.Fprintf(log, "===== start %d (%s) %s\n", d.starts, d.Firmware, time.Now().Format(time.RFC3339))

	sock := filepath.Join(d.Dir, "swtpm.sock")
	_ = os.Remove(sock)
	m.swtpm = exec.Command("swtpm", "socket", "--tpm2", "--terminate",
		"--tpmstate", "dir="+d.TPMDir,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+filepath.Join(d.Dir, "swtpm.log"))
	m.swtpm.SysProcAttr = procAttr()
	if err := m.swtpm.Start(); err != nil {
		log.Close()
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("e2e: swtpm not found: install the Debian package swtpm (scripts/test-deps.sh --e2e)")
		}
		return nil, fmt.Errorf("e2e: starting swtpm: %w", err)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 200 {
			m.killTPM()
			log.Close()
			return nil, fmt.Errorf("e2e: swtpm made no socket %s in 10 s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}

	qemu := exec.Command("qemu-system-x86_64", d.qemuArgs(sock)...)
	qemu.Stderr = &m.stderr
	qemu.SysProcAttr = procAttr()
	if err := m.launch(qemu); err != nil {
		m.killTPM()
		log.Close()
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("e2e: qemu-system-x86_64 not found: install the Debian package qemu-system-x86 (scripts/test-deps.sh --e2e)")
		}
		return nil, fmt.Errorf("e2e: starting QEMU: %w", err)
	}
	return m, nil
}

// launch starts cmd as the machine's QEMU, its standard input and output
// the serial console, and reads the console in the background.
func (m *Machine) launch(cmd *exec.Cmd) error {
	m.qemu = cmd
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if m.stdin, err = cmd.StdinPipe(); err != nil {
		return err
	}
	m.started = time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	go m.read(stdout)
	return nil
}

// read splits the console into lines until QEMU closes it, then waits for
// QEMU's exit.
func (m *Machine) read(r io.Reader) {
	buf := make([]byte, 32<<10)
	var partial []byte
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				if room := MaxLine - len(partial); room > 0 {
					partial = append(partial, chunk[:min(room, len(chunk))]...)
				}
				break
			}
			if room := MaxLine - len(partial); room > 0 {
				partial = append(partial, chunk[:min(room, i)]...)
			}
			m.addLine(string(partial))
			partial = partial[:0]
			chunk = chunk[i+1:]
		}
		if err != nil {
			break
		}
	}
	if len(partial) > 0 {
		m.addLine(string(partial))
	}
	werr := m.qemu.Wait()
	m.killTPM()
	m.mu.Lock()
	m.exited = true
	m.exitErr = werr
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	m.logMu.Lock()
	fmt.Fprintf(m.log, "===== QEMU exited after %.1f s: %v %s\n", time.Since(m.started).Seconds(), werr, strings.TrimSpace(m.stderr.String()))
	m.log.Close()
	m.logMu.Unlock()
	close(m.done)
}

func (m *Machine) addLine(raw string) {
	at := time.Since(m.started)
	text := CleanLine(raw)
	if strings.TrimSpace(text) == "" {
		return
	}
	l := Line{At: at, Text: text}
	if mk, ok := ParseMarker(text); ok {
		l.Marker = &mk
	}
	stamped := fmt.Sprintf("[%8.3f] %s\n", at.Seconds(), text)
	m.logMu.Lock()
	m.log.WriteString(stamped)
	if m.dev.Console != nil {
		io.WriteString(m.dev.Console, stamped)
	}
	m.logMu.Unlock()
	m.mu.Lock()
	if len(m.lines) < maxLines {
		m.lines = append(m.lines, l)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// killTPM ends swtpm (it ends by itself when QEMU disconnects; a power
// cut takes it down at once).
func (m *Machine) killTPM() {
	if m.swtpm == nil || m.swtpm.Process == nil {
		return
	}
	_ = m.swtpm.Process.Signal(syscall.SIGKILL)
	_ = m.swtpm.Wait()
	m.swtpm = nil
}

// Elapsed is the time since QEMU started.
func (m *Machine) Elapsed() time.Duration { return time.Since(m.started) }

// Cut is a power cut: QEMU and swtpm are killed with SIGKILL at once,
// leaving the disk images and TPM state as they are at that moment.
func (m *Machine) Cut() {
	_ = m.qemu.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// Stop ends QEMU if it still runs (SIGKILL) and waits for it; for
// clean-ups.
func (m *Machine) Stop() { m.Cut() }

// Exited reports whether QEMU has exited.
func (m *Machine) Exited() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exited
}

// Lines returns a copy of the console lines so far.
func (m *Machine) Lines() []Line {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Line(nil), m.lines...)
}

// Tail returns the last n console lines as text, for failure messages.
//
// When the console shows the guest kernel reporting trouble with a disk
// (diskTrouble), a last line says so.
func (m *Machine) Tail(n int) string {
	all := m.Lines()
	lines := all
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "\n  [%7.2f] %s", l.At.Seconds(), l.Text)
	}
	if st := diskTrouble(all); st != "" {
		fmt.Fprintf(&b, "\n  e2e: the guest kernel reported disk trouble (%q): see docs/E2E.md, \"Why virtio-blk\"", st)
	}
	return b.String()
}

// diskTroubleRE matches the guest kernel's reports of a disk that failed
// a request ("I/O error, dev vda, sector 123 op 0x0:(READ) ...") or of an
// NVMe command that timed out ("nvme nvme0: I/O 635 (I/O Cmd) QID 1
// timeout, aborting"), as the init's stuck: and problem: lines carry them.
var diskTroubleRE = regexp.MustCompile(`I/O error, dev \w+.*|nvme nvme\d+: I/O \d+ .*QID \d+ timeout.*`)

// diskTrouble returns the first report of disk trouble in the lines, or "".
func diskTrouble(lines []Line) string {
	for _, l := range lines {
		if loc := diskTroubleRE.FindStringIndex(l.Text); loc != nil {
			return l.Text[loc[0]:loc[1]]
		}
	}
	return ""
}

// ErrExited is returned by waits when QEMU exits first.
var ErrExited = errors.New("e2e: QEMU exited")

// waitLine waits until a line at index >= from satisfies ok, returning
// its index; ctx bounds the wait.
func (m *Machine) waitLine(ctx context.Context, from int, ok func(Line) bool) (int, error) {
	for {
		m.mu.Lock()
		for i := from; i < len(m.lines); i++ {
			if ok(m.lines[i]) {
				m.mu.Unlock()
				return i, nil
			}
		}
		from = max(from, len(m.lines))
		exited, ch := m.exited, m.changed
		m.mu.Unlock()
		if exited {
			return -1, ErrExited
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-ch:
		}
	}
}

// Phase names what the device was doing at its last console line: firmware
// (nothing from a boot script yet), grub or uboot (the boot script runs,
// chooses the slot and loads its kernel), kernel (the bootloader started
// the kernel: GRUB's "Booting `...'", U-Boot's "Starting kernel ..."),
// init (the init runs), running (ready for commands), off.
func (m *Machine) Phase() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return phaseOf(m.lines)
}

func phaseOf(lines []Line) string {
	for i := len(lines) - 1; i >= 0; i-- {
		mk := lines[i].Marker
		if mk == nil {
			if kernelStarts(lines[i].Text) {
				return "kernel"
			}
			continue
		}
		switch mk.Event {
		case "grub-start", "uboot-start", "grub-chose", "uboot-chose":
			ev, _, _ := strings.Cut(mk.Event, "-")
			return ev
		case "init", "boot", "init-crash":
			return "init"
		case "ready", "done", "out":
			return "running"
		case "rebooting":
			return "firmware"
		case "powering-off":
			return "off"
		}
	}
	return "firmware"
}

// AgentPrefix starts the agent's log lines on the console (its boot runs
// with the console as standard error; the lines of a command the harness
// runs come back in "out" markers).
const AgentPrefix = "upkit-agent: "

// agentStep returns the step word of an agent log line ("fetch" for
// "upkit-agent: fetch: rootfs ..."), or "" for another line.
func agentStep(l Line) string {
	text := l.Text
	if l.Marker != nil {
		if l.Marker.Event != "out" {
			return ""
		}
		text = l.Marker.Text
	}
	rest, ok := strings.CutPrefix(text, AgentPrefix)
	if !ok {
		return ""
	}
	step, _, ok := strings.Cut(rest, ":")
	if !ok {
		return ""
	}
	return step
}

// AgentPhase names the step of an update the device was in at its last
// console line, from the agent's lines and the boot reports: download
// (checking the release, fetching), slot-write (writing and reading back
// the new slot), activation (making the bootloader try it), reboot (from
// the agent's reboot until the agent runs on the next boot), commit (the
// agent's boot: health check, commit or rollback), done (the agent's boot
// reported its exit status), or Phase's name when no agent line came yet.
func (m *Machine) AgentPhase() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return agentPhaseOf(m.lines)
}

func agentPhaseOf(lines []Line) string {
	sawBoot := false // a boot report after the agent's last line
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if mk := l.Marker; mk != nil {
			switch mk.Event {
			case "agent-boot":
				return "done"
			case "rebooting", "grub-start", "uboot-start", "grub-chose", "uboot-chose", "init", "boot", "init-crash":
				sawBoot = true
			}
		} else if kernelStarts(l.Text) {
			sawBoot = true
		}
		switch agentStep(l) {
		case "check", "fetch":
			return "download"
		case "write", "installed":
			return "slot-write"
		case "verify":
			// Reading back the slot just written, or, at boot, the slot
			// about to be committed: the step before it tells.
			for j := i - 1; j >= 0; j-- {
				switch agentStep(lines[j]) {
				case "write", "fetch", "check":
					return "slot-write"
				case "boot", "health", "adopt":
					return "commit"
				}
			}
			return "slot-write"
		case "activate":
			return "activation"
		case "reboot":
			return "reboot"
		case "boot", "health", "commit", "rollback", "adopt":
			if sawBoot {
				return "reboot"
			}
			return "commit"
		}
	}
	return phaseOf(lines)
}

// kernelStarts reports whether a console line is the bootloader's last
// before the kernel runs: GRUB's "  Booting `Slot B (OK=1 TRY=1)'" (printed
// once the kernel is loaded) or U-Boot's "Starting kernel ...".
func kernelStarts(text string) bool {
	return strings.HasPrefix(strings.TrimSpace(text), "Booting `") || strings.HasPrefix(text, "Starting kernel")
}

// Boot is what one boot of the device reported.
type Boot struct {
	// Loader is grub or uboot; Tries lists the slots the boot script
	// chose since the previous boot, oldest first (more than one when a
	// boot failed before init and the device reset).
	Loader string
	Tries  []string
	// LoaderVars are the boot script's variables after its choice
	// (grub: order, a_ok, a_try, b_ok, b_try; uboot: order, a_left, b_left).
	LoaderVars map[string]string
	// Slot is upkit.slot= on the kernel command line; Release is
	// VERSION_ID of the booted /etc/os-release; Root the root device.
	Slot, Release, Root string
	TPM, Stick          bool
	Problems            string
	// DisksWaitMS is how long init waited for the kernel to find the
	// disk's partitions, the stick and the TPM (the kernel probes them in
	// the background), in 100 ms steps.
	DisksWaitMS int
	// AgentRC is the exit status of `upkit-agent boot` on this boot (-1
	// when the image has no agent); AgentLog its lines, without the
	// "upkit-agent: " prefix.
	AgentRC  int
	AgentLog []string
	// Times since the machine started: the boot began (power on or reset),
	// the boot script started, chose the slot, the bootloader had loaded
	// the kernel and started it (GRUB's "Booting `...'", U-Boot's
	// "Starting kernel ..."), init started, init was ready.
	Begin, LoaderAt, ChoseAt, KernelAt, InitAt, ReadyAt time.Duration
}

// Total is the time from power on or reset to the init being ready.
func (b Boot) Total() time.Duration { return b.ReadyAt - b.Begin }

// agentSummary is what a failure message says of the boot beyond its
// slot: the problems init reported and the agent's exit status and last
// lines ("" when there is nothing to say).
func (b Boot) agentSummary() string {
	var out strings.Builder
	if b.Problems != "" {
		fmt.Fprintf(&out, "; init's problems: %s", b.Problems)
	}
	if b.AgentRC >= 0 {
		fmt.Fprintf(&out, "; the agent exited %d", b.AgentRC)
		if n := len(b.AgentLog); n > 0 {
			fmt.Fprintf(&out, " after: %s", strings.Join(b.AgentLog[max(0, n-4):], " | "))
		}
	}
	return out.String()
}

// Timings shows the time per phase of the boot: the firmware until the
// boot script starts, the bootloader until the kernel starts (choosing
// the slot, loading the kernel), the kernel until init, init until ready.
func (b Boot) Timings() string {
	kernelAt := b.KernelAt
	if kernelAt == 0 {
		kernelAt = b.ChoseAt
	}
	s := fmt.Sprintf("%.1f s: firmware %.1f, %s %.1f, kernel %.1f, init %.1f",
		b.Total().Seconds(), (b.LoaderAt - b.Begin).Seconds(), b.Loader,
		(kernelAt - b.LoaderAt).Seconds(), (b.InitAt - kernelAt).Seconds(),
		(b.ReadyAt - b.InitAt).Seconds())
	if b.DisksWaitMS > 0 {
		s += fmt.Sprintf(" (of which %.1f waiting for the disks)", float64(b.DisksWaitMS)/1000)
	}
	return s
}

// WaitBoot waits until the device has booted to its init's "ready" (past
// the previous boot WaitBoot saw), and returns what that boot reported.
func (m *Machine) WaitBoot(ctx context.Context) (Boot, error) {
	m.mu.Lock()
	from := m.cursor
	m.mu.Unlock()
	i, err := m.waitLine(ctx, from, func(l Line) bool { return l.Marker != nil && l.Marker.Event == "ready" })
	if err != nil {
		return Boot{}, fmt.Errorf("e2e: waiting for the device to boot (phase %s): %w; console:%s", m.Phase(), err, m.Tail(50))
	}
	m.mu.Lock()
	lines := m.lines[from : i+1]
	m.cursor = i + 1
	m.mu.Unlock()
	b := Boot{AgentRC: -1}
	for _, l := range lines {
		mk := l.Marker
		if mk == nil {
			if b.ChoseAt > 0 && kernelStarts(l.Text) {
				b.KernelAt = l.At
			}
			if text, ok := strings.CutPrefix(l.Text, AgentPrefix); ok {
				b.AgentLog = append(b.AgentLog, text)
			}
			continue
		}
		switch mk.Event {
		case "rebooting":
			b = Boot{Begin: l.At, Tries: b.Tries, AgentRC: -1}
		case "agent-boot":
			if rc, err := strconv.Atoi(mk.Field("rc")); err == nil {
				b.AgentRC = rc
			}
		case "grub-start", "uboot-start":
			b.Loader = strings.TrimSuffix(mk.Event, "-start")
			b.LoaderAt = l.At
		case "grub-chose", "uboot-chose":
			b.Tries = append(b.Tries, mk.Field("slot"))
			b.LoaderVars = mk.Fields
			b.ChoseAt = l.At
			b.KernelAt = 0
		case "init":
			b.InitAt = l.At
		case "boot":
			b.Slot = mk.Field("slot")
			b.Release = mk.Field("release")
			b.Root = mk.Field("root")
			b.TPM = mk.Field("tpm") == "yes"
			b.Stick = mk.Field("stick") == "yes"
			b.Problems = mk.Field("problems")
			b.DisksWaitMS, _ = strconv.Atoi(mk.Field("disks-ms"))
		case "ready":
			b.ReadyAt = l.At
		}
	}
	// A reset without a "rebooting" line (a kernel panic, a boot script
	// that resets) is not seen: such a boot is timed from the previous
	// power on or reboot, failed tries included.
	if b.Loader == "" || len(b.Tries) == 0 {
		return b, fmt.Errorf("e2e: the device booted without its boot script's reports; console:%s", m.Tail(15))
	}
	return b, nil
}

// Send writes one line to the console.
func (m *Machine) Send(line string) error {
	if _, err := io.WriteString(m.stdin, line+"\n"); err != nil {
		return fmt.Errorf("e2e: console: %w", err)
	}
	return nil
}

// Job is a command started in the device (Spawn).
type Job struct {
	ID string
	// At is when it was sent, since the machine started.
	At   time.Duration
	from int
}

// Spawn starts a shell command in the booted device and returns at once;
// its output comes back line by line as "out" markers (Wait collects
// them). A command that reboots the device never reports done: wait for
// the next boot instead (WaitBoot).
func (m *Machine) Spawn(command string) (Job, error) {
	if strings.ContainsAny(command, "\n\r") {
		return Job{}, errors.New("e2e: a console command is one line")
	}
	m.mu.Lock()
	m.nextID++
	j := Job{ID: strconv.Itoa(m.nextID), from: len(m.lines)}
	m.mu.Unlock()
	j.At = m.Elapsed()
	if err := m.Send("@e2e run " + j.ID + " " + command); err != nil {
		return Job{}, err
	}
	return j, nil
}

// Wait waits for a spawned command to end and returns its output
// (standard output and error, lines joined by \n) and exit status.
func (m *Machine) Wait(ctx context.Context, j Job) (string, int, error) {
	i, err := m.waitLine(ctx, j.from, func(l Line) bool {
		return l.Marker != nil && l.Marker.Event == "done" && l.Marker.Field("id") == j.ID
	})
	if err != nil {
		return "", -1, fmt.Errorf("e2e: command %s: %w; console:%s", j.ID, err, m.Tail(10))
	}
	m.mu.Lock()
	var out []string
	for _, l := range m.lines[j.from:i] {
		if l.Marker != nil && l.Marker.Event == "out" && l.Marker.Field("id") == j.ID {
			out = append(out, l.Marker.Text)
		}
	}
	rc, perr := strconv.Atoi(m.lines[i].Marker.Field("rc"))
	m.mu.Unlock()
	if perr != nil {
		return "", -1, fmt.Errorf("e2e: command %s: bad exit status %q", j.ID, m.lines[i].Marker.Field("rc"))
	}
	return strings.Join(out, "\n"), rc, nil
}

// Run runs a shell command in the booted device and returns its output
// (standard output and error, lines joined by \n) and exit status.
func (m *Machine) Run(ctx context.Context, command string) (string, int, error) {
	j, err := m.Spawn(command)
	if err != nil {
		return "", -1, err
	}
	out, rc, err := m.Wait(ctx, j)
	if err != nil {
		return "", -1, fmt.Errorf("e2e: running %q: %w", command, err)
	}
	return out, rc, nil
}

// Reboot asks the init to sync and reset the machine, and waits for the
// next boot.
func (m *Machine) Reboot(ctx context.Context) (Boot, error) {
	if err := m.Send("@e2e reboot"); err != nil {
		return Boot{}, err
	}
	return m.WaitBoot(ctx)
}

// PowerOff asks the init to sync and power off, and waits for QEMU to
// exit.
//
// A kernel without ACPI cannot power the machine off and halts instead
// ("reboot: System halted"): QEMU's x86 U-Boot now and then hands over
// no ACPI tables (docs/E2E.md, "U-Boot"). Halted after init's sync is off
// as far as the disks and the TPM are concerned, so PowerOff then stops
// QEMU itself and says so in the console log.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	from := len(m.lines)
	m.mu.Unlock()
	if err := m.Send("@e2e poweroff"); err != nil {
		return err
	}
	_, err := m.waitLine(ctx, from, func(l Line) bool { return strings.Contains(l.Text, "reboot: System halted") })
	switch {
	case errors.Is(err, ErrExited):
		<-m.done
		return nil
	case err == nil:
		m.logMu.Lock()
		fmt.Fprintf(m.log, "===== the kernel halted instead of powering off (no ACPI): QEMU stopped by the harness\n")
		m.logMu.Unlock()
		m.Cut()
		return nil
	default:
		return fmt.Errorf("e2e: the device did not power off: %w; console:%s", err, m.Tail(10))
	}
}
