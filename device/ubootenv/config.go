package ubootenv

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// DefaultLockFile is the lock libubootenv's fw_printenv and fw_setenv take,
// so that Storage and those tools never write the environment at once.
const DefaultLockFile = "/var/lock/fw_printenv.lock"

// maxConfigSize bounds a fw_env.config.
const maxConfigSize = 64 << 10

// Location is where one copy of the environment lives.
type Location struct {
	// Path is a regular file or a block device.
	Path string
	// Offset is the copy's byte offset in Path; negative counts back from
	// the end of a block device (as libubootenv does).
	Offset int64
	// Size is the size of the copy (CONFIG_ENV_SIZE).
	Size int
	// SectorSize and Sectors are fw_env.config's optional fourth and fifth
	// columns, kept as read; they matter only for MTD flash, which Storage
	// does not support.
	SectorSize, Sectors int64
}

// Config says where the environment lives: one copy, or two redundant
// ones, as in libubootenv's fw_env.config.
type Config struct {
	// Copies holds one Location, or two for a redundant environment
	// (CONFIG_SYS_REDUNDAND_ENVIRONMENT) of the same size.
	Copies []Location
	// LockFile is locked (flock) while the environment is read or
	// written; "" takes no lock. ReadConfig sets DefaultLockFile.
	LockFile string
	// AllowEmpty makes Storage.Update start from an empty environment
	// when no copy is valid (a file that does not exist yet, a blank
	// partition). Leave it off for U-Boot's own saved environment: a valid
	// saved environment replaces U-Boot's built-in defaults (bootcmd and
	// all), so writing one that holds only a few variables can stop the
	// board from booting; set it up once from U-Boot's defaults (saveenv,
	// or mkenvimage). Turn it on for a file that a boot script merges with
	// "env import -c" (see contrib/u-boot).
	AllowEmpty bool
}

// Redundant reports whether the environment has two copies.
func (c *Config) Redundant() bool { return len(c.Copies) == 2 }

// Size returns the size of each copy.
func (c *Config) Size() int {
	if len(c.Copies) == 0 {
		return 0
	}
	return c.Copies[0].Size
}

// Validate checks the configuration: one or two copies of the same size,
// each within MaxSize and larger than its header, MTD and UBI refused.
func (c *Config) Validate() error {
	if len(c.Copies) != 1 && len(c.Copies) != 2 {
		return fmt.Errorf("%w: %d copies of the environment (want 1 or 2)", ErrConfig, len(c.Copies))
	}
	h := headerSize(c.Redundant())
	for i, l := range c.Copies {
		switch {
		case l.Path == "":
			return fmt.Errorf("%w: copy %d has no device", ErrConfig, i+1)
		case strings.HasPrefix(l.Path, "/dev/mtd") || strings.HasPrefix(l.Path, "/dev/ubi"):
			return fmt.Errorf("%w: %s: MTD flash and UBI volumes are not supported (they need erase-before-write); keep the environment on a block device or in a file, or use fw_setenv", ErrConfig, l.Path)
		case l.Size <= h || l.Size > MaxSize:
			return fmt.Errorf("%w: %s: environment size %#x (want %#x to %#x)", ErrConfig, l.Path, l.Size, h+1, MaxSize)
		case l.Size != c.Copies[0].Size:
			return fmt.Errorf("%w: the two copies have different sizes (%#x, %#x)", ErrConfig, c.Copies[0].Size, l.Size)
		}
	}
	if c.Redundant() && c.Copies[0].Path == c.Copies[1].Path {
		a, b := c.Copies[0], c.Copies[1]
		if a.Offset == b.Offset || (a.Offset >= 0) == (b.Offset >= 0) && overlap(a.Offset, b.Offset, int64(a.Size)) {
			return fmt.Errorf("%w: the two copies overlap in %s (offsets %#x and %#x, size %#x)", ErrConfig, a.Path, a.Offset, b.Offset, a.Size)
		}
	}
	return nil
}

func overlap(a, b, size int64) bool {
	if a > b {
		a, b = b, a
	}
	return b < a+size
}

// ParseConfig reads a libubootenv fw_env.config (the legacy format; the
// YAML one is not supported):
//
//	# device      offset   env size  [sector size  [sectors]]
//	/dev/mmcblk0  0x3800000  0x4000
//	/dev/mmcblk0  0x3804000  0x4000
//
// one line per copy, two lines for a redundant environment, with fields
// read as libubootenv reads them: the offset is a C integer (0x hex,
// leading-0 octal, decimal, may be negative), the sizes and the sector
// count are hexadecimal with or without 0x ("4000" means 0x4000). Lines
// starting with '#' and blank lines are skipped; so is the rest of a line
// after a '#' field. A line with fewer than three fields, a field that does
// not parse, or more than two copies is an error naming the line.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: configuration of %d bytes", ErrConfig, len(data))
	}
	cfg := &Config{LockFile: DefaultLockFile}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 {
			return nil, fmt.Errorf("%w: line %d: want DEVICE OFFSET SIZE, got %q", ErrConfig, n, sc.Text())
		}
		if len(fields) > 6 {
			return nil, fmt.Errorf("%w: line %d: %d fields (at most 6)", ErrConfig, n, len(fields))
		}
		var l Location
		l.Path = fields[0]
		var err error
		if l.Offset, err = parseCInt(fields[1]); err != nil {
			return nil, fmt.Errorf("%w: line %d: offset %q: %v", ErrConfig, n, fields[1], err)
		}
		size, err := parseHex(fields[2])
		if err != nil || size > MaxSize {
			return nil, fmt.Errorf("%w: line %d: environment size %q (hexadecimal, at most %#x)", ErrConfig, n, fields[2], MaxSize)
		}
		l.Size = int(size)
		if len(fields) > 3 {
			if l.SectorSize, err = parseHex(fields[3]); err != nil {
				return nil, fmt.Errorf("%w: line %d: sector size %q", ErrConfig, n, fields[3])
			}
		}
		if len(fields) > 4 {
			if l.Sectors, err = parseHex(fields[4]); err != nil {
				return nil, fmt.Errorf("%w: line %d: sector count %q", ErrConfig, n, fields[4])
			}
		}
		if len(fields) > 5 && fields[5] != "0" && fields[5] != "1" {
			return nil, fmt.Errorf("%w: line %d: lock flag %q (want 0 or 1)", ErrConfig, n, fields[5])
		}
		if len(cfg.Copies) == 2 {
			return nil, fmt.Errorf("%w: line %d: a third copy (at most two)", ErrConfig, n)
		}
		cfg.Copies = append(cfg.Copies, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseHex reads a non-negative hexadecimal number, with or without 0x, as
// C's strtoul(s, NULL, 16) does for a whole field.
func parseHex(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if t == "" || strings.ContainsAny(t, "+-_") {
		return 0, fmt.Errorf("not a hexadecimal number")
	}
	return strconv.ParseInt(t, 16, 64)
}

// parseCInt reads an integer as C's strtoll(s, NULL, 0) does for a whole
// field: an optional sign, then 0x and hexadecimal digits, or 0 and octal
// digits, or decimal digits.
func parseCInt(s string) (int64, error) {
	neg := false
	t := s
	if len(t) > 0 && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || strings.ContainsAny(t, "+-_") {
		return 0, fmt.Errorf("not a number")
	}
	v, err := strconv.ParseInt(t, base, 64)
	if err != nil {
		return 0, err
	}
	if neg {
		v = -v
	}
	return v, nil
}
