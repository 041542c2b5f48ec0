package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Images is one set of disk images made by e2e/build.sh.
type Images struct {
	// Dir holds disk.img, rootfs-RELEASE.ext4, bootflash.img, the firmware
	// and layout.txt.
	Dir string
	// Partitions of disk.img by name (esp, rootfs-a, rootfs-b, data).
	Partitions map[string]Partition
	// Root is the repository whose e2e/build.sh made them.
	Root string
}

// Partition is where one partition lies in disk.img, in bytes.
type Partition struct {
	Start, Size int64
}

// BuildImages runs e2e/build.sh from the repository at root (which finds
// the images in its cache when nothing changed) with env added to the
// environment, writing its progress to logw.
func BuildImages(ctx context.Context, root string, env []string, logw io.Writer) (*Images, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "e2e", "build.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = logw
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("e2e: e2e/build.sh: %w", err)
	}
	return LoadImages(root, strings.TrimSpace(out.String()))
}

// LoadImages reads the image set in dir, made by root's e2e/build.sh.
func LoadImages(root, dir string) (*Images, error) {
	f, err := os.Open(filepath.Join(dir, "layout.txt"))
	if err != nil {
		return nil, fmt.Errorf("e2e: images: %w", err)
	}
	defer f.Close()
	img := &Images{Dir: dir, Partitions: map[string]Partition{}, Root: root}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		if len(w) != 3 {
			return nil, fmt.Errorf("e2e: images: layout.txt: bad line %q", line)
		}
		start, err1 := strconv.ParseInt(w[1], 10, 64)
		size, err2 := strconv.ParseInt(w[2], 10, 64)
		if err1 != nil || err2 != nil || start < 0 || size <= 0 {
			return nil, fmt.Errorf("e2e: images: layout.txt: bad line %q", line)
		}
		img.Partitions[w[0]] = Partition{Start: start, Size: size}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("e2e: images: layout.txt: %w", err)
	}
	for _, name := range []string{"esp", "rootfs-a", "rootfs-b", "data"} {
		if _, ok := img.Partitions[name]; !ok {
			return nil, fmt.Errorf("e2e: images: layout.txt has no partition %q", name)
		}
	}
	return img, nil
}

// Rootfs returns the path of the rootfs image of release (1.0.0, 2.0.0,
// 3.0.0, 3.0.0-noinit).
func (img *Images) Rootfs(release string) string {
	return filepath.Join(img.Dir, "rootfs-"+release+".ext4")
}

// Firmware is how the device boots.
type Firmware int

const (
	// GRUB: OVMF (UEFI) starts GRUB's EFI image from the ESP, which picks
	// the slot from the grubenv next to it (contrib/grub/grub.cfg).
	GRUB Firmware = iota
	// UBoot: U-Boot (qemu-x86, as -bios) runs boot.scr from an IDE boot
	// flash (contrib/u-boot/boot.cmd), which picks the slot from the
	// variables' file upkit.env on the ESP.
	UBoot
)

func (f Firmware) String() string {
	if f == UBoot {
		return "uboot"
	}
	return "grub"
}

// Device is one virtual device: its own copies of the disks, firmware
// variables and TPM state, which survive power cuts and restarts.
type Device struct {
	Firmware Firmware
	Images   *Images
	// Dir is the device's folder: disk.img, OVMF_VARS.fd, bootflash.img,
	// stick.img, tpm/ and console.log.
	Dir                          string
	Disk, Vars, BootFlash, Stick string
	TPMDir                       string
	// ConsoleLog gets every console line of every start, timed.
	ConsoleLog string
	// Console, when set, also gets every console line (make e2e V=1).
	Console io.Writer
	starts  int
}

// NewDevice makes a device in dir (which must exist) from img: sparse
// copies of the disk images and a manufactured TPM (swtpm_setup) with the
// SHA-256 PCR bank only (OVMF measures the kernel in software for every
// active bank: four banks cost some 25 s more per boot under TCG).
func NewDevice(ctx context.Context, dir string, img *Images, fw Firmware) (*Device, error) {
	d := &Device{
		Firmware:   fw,
		Images:     img,
		Dir:        dir,
		Disk:       filepath.Join(dir, "disk.img"),
		TPMDir:     filepath.Join(dir, "tpm"),
		ConsoleLog: filepath.Join(dir, "console.log"),
	}
	if err := copySparse(ctx, filepath.Join(img.Dir, "disk.img"), d.Disk); err != nil {
		return nil, err
	}
	switch fw {
	case GRUB:
		d.Vars = filepath.Join(dir, "OVMF_VARS.fd")
		if err := copySparse(ctx, filepath.Join(img.Dir, "OVMF_VARS.fd"), d.Vars); err != nil {
			return nil, err
		}
	case UBoot:
		d.BootFlash = filepath.Join(dir, "bootflash.img")
		if err := copySparse(ctx, filepath.Join(img.Dir, "bootflash.img"), d.BootFlash); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(d.TPMDir, 0o700); err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	if _, err := run(ctx, nil, "swtpm_setup", "--tpm2", "--tpmstate", d.TPMDir, "--pcr-banks", "sha256", "--overwrite"); err != nil {
		return nil, err
	}
	return d, nil
}

// WritePartition copies image into the partition name of the device's
// disk, refusing an image larger than the partition.
func (d *Device) WritePartition(name, image string) error {
	p, ok := d.Images.Partitions[name]
	if !ok {
		return fmt.Errorf("e2e: no partition %q", name)
	}
	src, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	if fi.Size() > p.Size {
		return fmt.Errorf("e2e: %s is %d bytes, partition %s only %d", image, fi.Size(), name, p.Size)
	}
	dst, err := os.OpenFile(d.Disk, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	if _, err := io.Copy(io.NewOffsetWriter(dst, p.Start), src); err != nil {
		dst.Close()
		return fmt.Errorf("e2e: writing %s into %s: %w", image, name, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	return nil
}

// SetStick makes the device's "USB stick" from dir (an OCI image layout),
// an ext4 image labelled upkit-stick that the guest mounts at /mnt/stick.
func (d *Device) SetStick(ctx context.Context, dir string) error {
	stick := filepath.Join(d.Dir, "stick.img")
	if _, err := run(ctx, nil, filepath.Join(d.Images.Root, "e2e", "build.sh"), "stick", dir, stick); err != nil {
		return err
	}
	d.Stick = stick
	return nil
}

// WriteData writes a file at path (relative, such as
// "upkit/factory-release.json"; its folders are made) into the ext4 data
// partition of the powered-off disk, with debugfs, as a factory
// provisions it; an existing file is replaced.
func (d *Device) WriteData(ctx context.Context, path string, data []byte) error {
	p := d.Images.Partitions["data"]
	fs := fmt.Sprintf("%s?offset=%d", d.Disk, p.Start)
	local := filepath.Join(d.Dir, "data-"+filepath.Base(path))
	if err := os.WriteFile(local, data, 0o644); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer os.Remove(local)
	dir := ""
	for _, part := range strings.Split(filepath.Dir(path), "/") {
		if part == "." {
			continue
		}
		dir = filepath.Join(dir, part)
		// mkdir fails when the folder exists: only the write is checked.
		_, _ = run(ctx, nil, "debugfs", "-w", "-R", "mkdir "+dir, fs)
	}
	_, _ = run(ctx, nil, "debugfs", "-w", "-R", "rm "+path, fs)
	if _, err := run(ctx, nil, "debugfs", "-w", "-R", "write "+local+" "+path, fs); err != nil {
		return err
	}
	out, err := run(ctx, nil, "debugfs", "-R", "stat "+path, fs)
	if err != nil || !strings.Contains(out, fmt.Sprintf("Size: %d", len(data))) {
		return fmt.Errorf("e2e: %s did not land in the data partition: %v %s", path, err, out)
	}
	return nil
}

// espImage returns the mtools image argument for the ESP inside the disk.
func (d *Device) espImage() string {
	return fmt.Sprintf("%s@@%d", d.Disk, d.Images.Partitions["esp"].Start)
}

// GrubenvPath is where the grubenv lies on the ESP.
const GrubenvPath = "/EFI/BOOT/grubenv"

// UBootEnvPath is where U-Boot's variables' file lies on the ESP.
const UBootEnvPath = "/upkit.env"

// UBootEnvSize is the size of U-Boot's variables' file (upkit_envsize).
const UBootEnvSize = 0x4000

// copyOut copies the ESP file path out of the (powered off) disk into a
// temporary file.
func (d *Device) copyOut(ctx context.Context, path string) (string, error) {
	tmp := filepath.Join(d.Dir, "esp-"+filepath.Base(path))
	_ = os.Remove(tmp)
	if _, err := run(ctx, mtoolsEnv, "mcopy", "-n", "-i", d.espImage(), "::"+path, tmp); err != nil {
		return "", err
	}
	return tmp, nil
}

// copyIn replaces the ESP file path with local.
func (d *Device) copyIn(ctx context.Context, local, path string) error {
	_, err := run(ctx, mtoolsEnv, "mcopy", "-o", "-i", d.espImage(), local, "::"+path)
	return err
}

var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// Grubenv returns the variables of the grubenv on the device's ESP, as
// grub-editenv lists them. The device must be off.
func (d *Device) Grubenv(ctx context.Context) (map[string]string, error) {
	tmp, err := d.copyOut(ctx, GrubenvPath)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if fi, err := os.Stat(tmp); err != nil || fi.Size() != 1024 {
		return nil, fmt.Errorf("e2e: grubenv is not a 1024-byte block (%v)", err)
	}
	out, err := run(ctx, nil, "grub-editenv", tmp, "list")
	if err != nil {
		return nil, err
	}
	return parseVars(out, "=")
}

// SetGrubenv sets variables (NAME=VALUE each) in the grubenv on the
// device's ESP with grub-editenv, as a user or an installer would. The
// device must be off.
func (d *Device) SetGrubenv(ctx context.Context, vars ...string) error {
	tmp, err := d.copyOut(ctx, GrubenvPath)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := run(ctx, nil, "grub-editenv", append([]string{tmp, "set"}, vars...)...); err != nil {
		return err
	}
	return d.copyIn(ctx, tmp, GrubenvPath)
}

// UBootEnv returns the variables of U-Boot's variables' file on the ESP,
// read with fw_printenv (libubootenv). The device must be off.
func (d *Device) UBootEnv(ctx context.Context) (map[string]string, error) {
	tmp, err := d.copyOut(ctx, UBootEnvPath)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	cfg := tmp + ".config"
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("%s 0x0 %#x\n", tmp, UBootEnvSize)), 0o644); err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	defer os.Remove(cfg)
	out, err := run(ctx, nil, "fw_printenv", "-c", cfg)
	if err != nil {
		return nil, err
	}
	return parseVars(out, "=")
}

// SetUBootEnv replaces U-Boot's variables' file on the ESP with one made
// by mkenvimage from vars. The device must be off.
func (d *Device) SetUBootEnv(ctx context.Context, vars map[string]string) error {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var text strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&text, "%s=%s\n", k, vars[k])
	}
	txt := filepath.Join(d.Dir, "upkit.env.txt")
	env := filepath.Join(d.Dir, "upkit.env")
	if err := os.WriteFile(txt, []byte(text.String()), 0o644); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer os.Remove(txt)
	defer os.Remove(env)
	if _, err := run(ctx, nil, "mkenvimage", "-s", strconv.Itoa(UBootEnvSize), "-o", env, txt); err != nil {
		return err
	}
	return d.copyIn(ctx, env, UBootEnvPath)
}

// parseVars reads NAME<sep>VALUE lines.
func parseVars(out, sep string) (map[string]string, error) {
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, sep)
		if !ok {
			return nil, fmt.Errorf("e2e: not a variable: %q", line)
		}
		vars[k] = v
	}
	return vars, nil
}

// run runs a tool, returning its standard output; the error names the
// command and carries its standard error, or the package to install when
// the tool is missing.
func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("e2e: %s not found: install the Debian package %s (scripts/test-deps.sh --e2e)", name, packageOf(name))
		}
		return "", fmt.Errorf("e2e: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// packageOf names the Debian package of a tool the harness runs.
func packageOf(tool string) string {
	switch tool {
	case "qemu-system-x86_64":
		return "qemu-system-x86"
	case "swtpm":
		return "swtpm"
	case "swtpm_setup":
		return "swtpm-tools"
	case "mcopy", "mmd":
		return "mtools"
	case "grub-editenv":
		return "grub-common"
	case "mkenvimage":
		return "u-boot-tools"
	case "debugfs":
		return "e2fsprogs"
	case "fw_printenv", "fw_setenv":
		return "libubootenv-tool"
	case "cp":
		return "coreutils"
	}
	return tool
}

// copySparse copies a disk image, keeping its holes.
func copySparse(ctx context.Context, src, dst string) error {
	_, err := run(ctx, nil, "cp", "--sparse=always", src, dst)
	return err
}
