//go:build exp

// Experiments on the sections of real pairs: go test -tags exp -run TestExp
// with EXP_PAIRS naming pair directories under /tmp/ota-corpus (bench/delta.sh's
// cache). TestExpDump writes each pair's sections (through debugDump) under
// expDir; the others recode them with the current models and print sizes.

package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Where TestExpDump writes, and the others read, the dumped sections.

const expDir = "/tmp/i16b/dump"

func expPairs() []string { return strings.Fields(os.Getenv("EXP_PAIRS")) }

func TestExpDump(t *testing.T) {
	for _, p := range expPairs() {
		old, _ := os.ReadFile("/tmp/ota-corpus/" + p + "/old")
		nw, _ := os.ReadFile("/tmp/ota-corpus/" + p + "/new")
		files := map[string]*bytes.Buffer{}
		w := func(name string, b []byte) {
			if files[name] == nil {
				files[name] = new(bytes.Buffer)
			}
			files[name].Write(b)
		}
		debugDump = func(kind string, a, b []byte) {
			var l [8]byte
			binary.LittleEndian.PutUint64(l[:], uint64(len(a)))
			w(kind+".len", l[:])
			w(kind+".a", a)
			w(kind+".b", b)
		}
		var buf bytes.Buffer
		if _, err := Create(context.Background(), old, nw, &buf, nil); err != nil {
			t.Fatal(err)
		}
		debugDump = nil
		d := filepath.Join(expDir, p)
		os.MkdirAll(d, 0o755)
		for n, b := range files {
			os.WriteFile(filepath.Join(d, n), b.Bytes(), 0o644)
		}
		t.Logf("%s: patch %d", p, buf.Len())
	}
}

type expSect struct{ a, b [][]byte }

func expLoad(t *testing.T, p, kind string) expSect {
	d := filepath.Join(expDir, p)
	l, err := os.ReadFile(filepath.Join(d, kind+".len"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(d, kind+".a"))
	b, _ := os.ReadFile(filepath.Join(d, kind+".b"))
	var s expSect
	for ; len(l) > 0; l = l[8:] {
		n := int(binary.LittleEndian.Uint64(l))
		s.a = append(s.a, a[:n])
		a = a[n:]
		if len(b) >= n {
			s.b = append(s.b, b[:n])
			b = b[n:]
		} else {
			s.b = append(s.b, nil)
		}
	}
	return s
}

func TestExpLit(t *testing.T) {

	for _, p := range expPairs() {
		s := expLoad(t, p, "extra")
		ps := expLoad(t, p, "extrapos")
		m := expNewLit()
		total, raw := 0, 0
		var dec [][]byte
		var codes [][]byte
		t0 := time.Now()
		for i, e := range s.a {
			if len(e) == 0 || incompressible(e) {
				total += len(e)
				codes = append(codes, nil)
				continue
			}
			rc := newEncoder(nil)
			expCode(m, rc, e, s.b[i], ps.a[i])
			c := rc.finish()
			codes = append(codes, c)
			total += len(c) + 4
			raw += len(e)
		}
		et := time.Since(t0)
		var best time.Duration
		for rep := 0; rep < expEnvInt("EXP_REPS", 1); rep++ {
			t0 = time.Now()
			m = expNewLit()
			for i, e := range s.a {
				if codes[i] == nil {
					continue
				}
				out := bytes.Clone(s.b[i])
				var rc rangeCoder
				rc.initDecoder(bytes.NewReader(codes[i]), int64(len(codes[i])), codedPad)
				expCode(m, &rc, out, out, ps.a[i])
				dec = append(dec, out)
				if !bytes.Equal(out, e) {
					t.Fatalf("%s: block %d decodes differently", p, i)
				}
			}
			if d := time.Since(t0); rep == 0 || d < best {
				best = d
			}
		}
		t.Logf("%s: extra %d -> %d bytes (%.3f bpc), enc %v dec %v", p, raw, total, float64(total*8)/float64(raw), et, best)
	}
}

func TestExpDiff(t *testing.T) {
	for _, p := range expPairs() {
		s := expLoad(t, p, "diff")
		m := newDiffModel(expEnvInt("EXP_DBITS", DefaultModelBits))
		rc := newEncoder(nil)
		raw, nz := 0, 0
		t0 := time.Now()
		for i, d := range s.a {
			m.codeRun(rc, d, s.b[i])
			raw += len(d)
			for _, x := range d {
				if x != 0 {
					nz++
				}
			}
		}
		c := rc.finish()
		t.Logf("%s: diff %d (%d nonzero) -> %d bytes, enc %v", p, raw, nz, len(c), time.Since(t0))
	}
}

var expLitBits = func() int {
	if v := os.Getenv("EXP_LITBITS"); v != "" {
		n := 0
		for _, c := range v {
			n = n*10 + int(c-'0')
		}
		return n
	}
	return DefaultModelBits
}()

func TestExpCtrl(t *testing.T) {
	for _, p := range expPairs() {
		s := expLoad(t, p, "ctrl")
		var ops [][3]int64
		for _, b := range s.a {
			for len(b) > 0 {
				seek, n1 := binary.Varint(b)
				add, n2 := binary.Uvarint(b[n1:])
				cp, n3 := binary.Uvarint(b[n1+n2:])
				b = b[n1+n2+n3:]
				ops = append(ops, [3]int64{seek, int64(add), int64(cp)})
			}
		}
		// offsets: oldPos - newPos at each add
		var recent []int64
		hist := map[int]int{}
		cur, np := int64(0), int64(0)
		nadd, zeroSeek := 0, 0
		for _, o := range ops {
			cur += o[0]
			if o[1] > 0 {
				nadd++
				if o[0] == 0 {
					zeroSeek++
				}
				off := cur - np
				k := -1
				for j, r := range recent {
					if r == off {
						k = j
						break
					}
				}
				hist[k]++
				if k < 0 {
					recent = append([]int64{off}, recent...)
				} else {
					recent = append(append([]int64{off}, recent[:k]...), recent[k+1:]...)
				}
				if len(recent) > 64 {
					recent = recent[:64]
				}
			}
			cur += o[1]
			np += o[1] + o[2]
		}
		t.Logf("%s: %d ops, %d adds, %d zero seeks, rep hist -1:%d 0:%d 1:%d 2:%d 3:%d 4-7:%d 8-63:%d", p, len(ops), nadd, zeroSeek, hist[-1], hist[0], hist[1], hist[2], hist[3], hist[4]+hist[5]+hist[6]+hist[7], func() int {
			n := 0
			for k, v := range hist {
				if k >= 8 {
					n += v
				}
			}
			return n
		}())
	}
}

func expEnvInt(k string, d int) int {
	if v := os.Getenv(k); v != "" {
		n := 0
		for _, c := range v {
			n = n*10 + int(c-'0')
		}
		return n
	}
	return d
}

func expNewLit() litCoder {
	return newLitModel(expLitBits)
}

func expCode(m litCoder, rc *rangeCoder, b, o, pl []byte) {
	for len(pl) > 0 {
		pos := int64(binary.LittleEndian.Uint64(pl))
		n := int(binary.LittleEndian.Uint64(pl[8:]))
		pl = pl[16:]
		m.code(rc, b[:n], o[:n], pos)
		b, o = b[n:], o[n:]
	}
}
