package ubootenv_test

import (
	"errors"
	"hash/crc32"
	"testing"

	"github.com/upkit/upkit/device/ubootenv"
)

// FuzzDecode: any copy of an environment (with a CRC fixed up to match,
// when fix is set, so the entries themselves are fuzzed) either fails with
// ErrCRC or ErrCorrupt, or decodes to variables that encode into a copy of
// the same size that decodes to the same variables.
func FuzzDecode(f *testing.F) {
	e := ubootenv.NewEnv()
	e.Set("BOOT_ORDER", "A B")
	e.Set("BOOT_A_LEFT", "3")
	e.Set("bootcmd", "run x\nrun y")
	for _, redundant := range []bool{false, true} {
		img, _ := e.Encode(256, redundant, 7)
		f.Add(img, redundant, false)
	}
	f.Add([]byte("\x00\x00\x00\x00a=1\x00b=\x00\x00"), false, true)
	f.Add([]byte("\x00\x00\x00\x00\x01=1\x00\x00"), true, true)
	f.Fuzz(func(t *testing.T, img []byte, redundant, fix bool) {
		h := 4
		if redundant {
			h = 5
		}
		if fix && len(img) > h {
			c := crc32.ChecksumIEEE(img[h:])
			img[0], img[1], img[2], img[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		}
		env, flags, err := ubootenv.Decode(img, redundant)
		if err != nil {
			if !errors.Is(err, ubootenv.ErrCRC) && !errors.Is(err, ubootenv.ErrCorrupt) {
				t.Fatalf("error %v wraps neither ErrCRC nor ErrCorrupt", err)
			}
			return
		}
		if !redundant && flags != 0 {
			t.Fatalf("single copy with flags %d", flags)
		}
		again, err := env.Encode(len(img), redundant, flags)
		if err != nil {
			// Decode accepts empty values ("name="), which Set deletes,
			// so the variables always fit again.
			t.Fatalf("decoded variables do not encode in the same size: %v", err)
		}
		env2, flags2, err := ubootenv.Decode(again, redundant)
		if err != nil || flags2 != flags {
			t.Fatalf("re-encoded copy: %v, flags %d want %d", err, flags2, flags)
		}
		if len(env2.Names()) != len(env.Names()) {
			t.Fatalf("names %q became %q", env.Names(), env2.Names())
		}
		for _, n := range env.Names() {
			a, _ := env.Get(n)
			b, _ := env2.Get(n)
			if a != b {
				t.Fatalf("%q: %q became %q", n, a, b)
			}
		}
	})
}

// FuzzParseConfig: a fw_env.config either fails with ErrConfig or gives a
// configuration that validates.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("/dev/mmcblk0 0x3800000 0x4000\n/dev/mmcblk0 0x3804000 0x4000\n"))
	f.Add([]byte("# c\n/boot/uboot.env 0 4000 # x\n"))
	f.Add([]byte("/dev/sda2 -0x20000 0x20000 0x20000 1 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ubootenv.ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ubootenv.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseConfig returned a configuration that does not validate: %v", err)
		}
	})
}
