package demo

import (
	"archive/tar"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// samples holds the demo's agent executables and their source (see
// sample/README.md).
//
//go:embed sample/agent-v1 sample/agent-v2 sample/agent.c
var samples embed.FS

// Agent returns the sample executable of version v (1 or 2).
func Agent(v int) ([]byte, error) {
	return fs.ReadFile(samples, fmt.Sprintf("sample/agent-v%d", v))
}

// file is one entry of the sample tree.
type file struct {
	mode int64
	data []byte
}

// blob returns n pseudo-random bytes of "machine code like" content, the
// same for the same seed; mutate changes a few scattered bytes, the way a
// rebuilt library changes.
func blob(seed uint64, n int, mutate int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x75706b6974))
	b := make([]byte, n)
	// Mostly small opcodes and repeated little-endian words: compressible
	// but not trivially, like real binaries.
	for i := 0; i < n; i += 4 {
		w := uint32(r.IntN(4096)) << (8 * uint(r.IntN(2)))
		for j := 0; j < 4 && i+j < n; j++ {
			b[i+j] = byte(w >> (8 * j))
		}
	}
	if mutate > 0 {
		m := rand.New(rand.NewPCG(seed, uint64(mutate)))
		for k := 0; k < 64; k++ {
			b[m.IntN(n)] ^= byte(1 + m.IntN(255))
		}
	}
	return b
}

// RootFS returns the sample root filesystem image of version v (1, 2 or 3)
// as a deterministic tar archive of about 1.3 MB. Version 3 is version 2
// with a changed configuration file: the demo's attacker publishes it.
func RootFS(v int) ([]byte, error) {
	if v < 1 || v > 3 {
		return nil, fmt.Errorf("sample: no root filesystem version %d", v)
	}
	agent, err := Agent(min(v, 2))
	if err != nil {
		return nil, err
	}
	files := map[string]file{
		"etc/hostname":        {0o644, []byte("upkit-demo\n")},
		"etc/os-release":      {0o644, []byte(fmt.Sprintf("NAME=\"upkit demo OS\"\nID=upkit-demo\nVERSION_ID=%d.0\nPRETTY_NAME=\"upkit demo OS %d.0\"\n", v, v))},
		"etc/fstab":           {0o644, []byte("/dev/root / ext4 ro 0 1\ntmpfs /tmp tmpfs defaults 0 0\n")},
		"usr/bin/agent":       {0o755, agent},
		"usr/lib/libcore.so":  {0o644, blob(1, 768<<10, v-1)},
		"usr/lib/libnet.so":   {0o644, blob(2, 384<<10, 0)},
		"usr/share/demo/motd": {0o644, []byte(strings.Repeat(fmt.Sprintf("Welcome to upkit demo OS %d.0\n", v), 8))},
	}
	if v >= 2 {
		files["usr/lib/libtls.so"] = file{0o644, blob(3, 96<<10, 0)}
		files["etc/agent.conf"] = file{0o644, []byte(fmt.Sprintf("health_check = true\ninterval = %ds\n", 30*(v-1)))}
	}
	return tarOf(files)
}

func tarOf(files map[string]file) ([]byte, error) {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for n := range files {
		names = append(names, n)
		for d := n; strings.Contains(d, "/"); {
			d = d[:strings.LastIndex(d, "/")]
			dirs[d+"/"] = true
		}
	}
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(1700000000, 0).UTC()
	for _, n := range names {
		hdr := &tar.Header{Name: n, ModTime: epoch, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			f := files[n]
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[n].data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
