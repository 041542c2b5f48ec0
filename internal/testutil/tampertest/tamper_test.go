package tampertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"
)

var update = flag.Bool("update", false, "rewrite docs/SECURITY-tamper.md with this run's figures")

const docPath = "../../../docs/SECURITY-tamper.md"

// now is the reference time of every verification: the artifacts are valid
// at it.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// outcome is what a verifier made of one input.
type outcome int

const (
	rejected outcome = iota
	accepted
	// acceptedSame: accepted, and what it produced is bit-identical to
	// what the unmodified artifact produces (deltas only: the output is
	// checked against the sha256 in the patch header).
	acceptedSame
)

// verifier checks one artifact's bytes as the device would.
type verifier func(b []byte) outcome

// classStats counts the mutations of one class fed to one verifier.
type classStats struct {
	n, rejected, accepted, same, panics int
	gaps                                int // accepted, listed in knownGaps
	equiv, equivAccepted                int
}

// corpus runs mutations of one artifact kind through one verifier and
// keeps the counts.
type corpus struct {
	t        *testing.T
	kind     string // row name in the report
	verify   verifier
	classes  map[string]*classStats
	failures []string
	gapsSeen map[string]bool
	// sameNames are the mutations accepted with a bit-identical output.
	sameNames []string
	// gapsExpected: this corpus feeds the documents of knownGaps.
	gapsExpected bool
}

func newCorpus(t *testing.T, kind string, v verifier) *corpus {
	return &corpus{t: t, kind: kind, verify: v, classes: map[string]*classStats{}, gapsSeen: map[string]bool{}}
}

// run feeds b to the verifier, recovering panics.
func (c *corpus) run(b []byte) (o outcome, panicked bool, stack string) {
	defer func() {
		if r := recover(); r != nil {
			panicked, stack = true, fmt.Sprintf("%v\n%s", r, debug.Stack())
		}
	}()
	return c.verify(b), false, ""
}

// reject feeds a mutation that must be rejected (or, for deltas, may be
// accepted only if its output is bit-identical to the expected one).
func (c *corpus) reject(class, name string, b []byte) {
	s := c.stats(class)
	s.n++
	o, panicked, stack := c.run(b)
	switch {
	case panicked:
		s.panics++
		c.fail("%s: %s: PANIC %s", class, name, stack)
	case o == accepted && knownGaps[class+": "+name] != "":
		s.gaps++
		c.gapsSeen[class+": "+name] = true
	case o == accepted:
		s.accepted++
		c.fail("%s: %s: ACCEPTED (%d bytes)", class, name, len(b))
	case o == acceptedSame:
		s.same++
		c.sameNames = append(c.sameNames, class+": "+name)
	default:
		s.rejected++
	}
}

// equivalent feeds a mutation that provably does not change what was signed
// (documented per kind): it must be accepted.
func (c *corpus) equivalent(class, name string, b []byte) {
	s := c.stats(class)
	s.n++
	s.equiv++
	o, panicked, stack := c.run(b)
	switch {
	case panicked:
		s.panics++
		c.fail("%s: %s: PANIC %s", class, name, stack)
	case o == rejected:
		c.fail("%s: %s: equivalent form rejected", class, name)
	default:
		s.equivAccepted++
	}
}

func (c *corpus) stats(class string) *classStats {
	s := c.classes[class]
	if s == nil {
		s = &classStats{}
		c.classes[class] = s
	}
	return s
}

func (c *corpus) fail(format string, args ...any) {
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

// control asserts that the unmodified artifact is accepted, so that the
// rejections are the mutations' doing.
func (c *corpus) control(name string, b []byte) {
	c.t.Helper()
	if o, panicked, stack := c.run(b); panicked || o == rejected {
		c.t.Fatalf("%s: the unmodified %s is not accepted (panic %v %s): the corpus would prove nothing", c.kind, name, panicked, stack)
	}
}

// finish reports failures and records the counts for the summary.
func (c *corpus) finish() {
	c.t.Helper()
	for i, f := range c.failures {
		if i == 20 {
			c.t.Errorf("%s: ... and %d more", c.kind, len(c.failures)-20)
			break
		}
		c.t.Errorf("%s: %s", c.kind, f)
	}
	if c.gapsExpected {
		for g := range knownGaps {
			if !c.gapsSeen[g] {
				c.t.Errorf("%s: known gap %q is now refused: remove it from knownGaps and regenerate docs/SECURITY-tamper.md", c.kind, g)
			}
		}
	}
	var tot classStats
	for _, s := range c.classes {
		tot.gaps += s.gaps
		tot.n += s.n
		tot.accepted += s.accepted
		tot.panics += s.panics
		tot.same += s.same
		tot.equiv += s.equiv
	}
	c.t.Logf("%s: %d mutations, %d accepted, %d panics, %d equivalent forms accepted as designed, %d with identical output, %d known gaps",
		c.kind, tot.n, tot.accepted, tot.panics, tot.equiv, tot.same, tot.gaps)
	results.add(c)
}

// summary collects the corpora of all subtests for the report.
type summary struct {
	mu      sync.Mutex
	corpora []*corpus
}

var results summary // written by the parallel subtests of TestTamperCorpus only

func (s *summary) add(c *corpus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corpora = append(s.corpora, c)
}

// --- byte-level mutations, common to every kind ---

func isJSONSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// byteMutations feeds c byte-level mutations of data. Offsets below
// dense (a binary header, where every bit has a meaning) get all 8
// single-bit flips, overwrites with 0x00 and 0xff, deletion, insertion and
// truncation; every flipStride-th other offset gets one single-bit flip
// (the bit rotates with the offset), and every stride-th one the other
// operations too.
// Extensions with zero, 0xff and random bytes follow. For JSON documents,
// removing whitespace and appending it are equivalent (envelopes hold
// whitespace only between tokens).
func byteMutations(c *corpus, label string, data []byte, isJSON bool, dense, flipStride, stride int) {
	rng := rand.New(rand.NewPCG(1, uint64(len(data))))
	for i := range data {
		full := i < dense
		for bit := 0; bit < 8; bit++ {
			if !full && (bit != i%8 || i%flipStride != 0) {
				continue
			}
			m := bytes.Clone(data)
			m[i] ^= 1 << bit
			c.reject("bit flip", fmt.Sprintf("%s: byte %d bit %d", label, i, bit), m)
		}
		if !full && i%stride != 0 {
			continue
		}
		for _, v := range []byte{0x00, 0xff} {
			if data[i] == v {
				continue
			}
			m := bytes.Clone(data)
			m[i] = v
			c.reject("byte overwrite", fmt.Sprintf("%s: byte %d := %#x", label, i, v), m)
		}
		m := append(bytes.Clone(data[:i]), data[i+1:]...)
		if isJSON && isJSONSpace(data[i:i+1]) {
			c.equivalent("whitespace outside the signed payload", fmt.Sprintf("%s: whitespace byte %d deleted", label, i), m)
		} else {
			c.reject("byte deletion", fmt.Sprintf("%s: byte %d deleted", label, i), m)
		}
		ins := byte(rng.UintN(256))
		if isJSON && isJSONSpace([]byte{ins}) {
			ins = 'x'
		}
		m = append(append(bytes.Clone(data[:i]), ins), data[i:]...)
		c.reject("byte insertion", fmt.Sprintf("%s: %#x inserted at %d", label, ins, i), m)
		if isJSON && isJSONSpace(data[i:]) {
			c.equivalent("whitespace outside the signed payload", fmt.Sprintf("%s: trailing whitespace removed at %d", label, i), bytes.Clone(data[:i]))
		} else {
			c.reject("truncation", fmt.Sprintf("%s: truncated to %d bytes", label, i), bytes.Clone(data[:i]))
		}
	}
	// Past every size limit: 1 MiB of zeros, once.
	c.reject("extension", fmt.Sprintf("%s: %d zero bytes appended", label, 1<<20), append(bytes.Clone(data), make([]byte, 1<<20)...))
	for _, n := range []int{1, 2, 3, 8, 64, 4096} {
		c.reject("extension", fmt.Sprintf("%s: %d zero bytes appended", label, n), append(bytes.Clone(data), make([]byte, n)...))
		c.reject("extension", fmt.Sprintf("%s: %d 0xff bytes appended", label, n), append(bytes.Clone(data), bytes.Repeat([]byte{0xff}, n)...))
		for k := 0; k < 2; k++ {
			ext := make([]byte, n)
			for j := range ext {
				ext[j] = byte(rng.UintN(256))
			}
			if isJSON && isJSONSpace(ext) {
				ext[0] = 'x'
			}
			c.reject("extension", fmt.Sprintf("%s: %d random bytes appended", label, n), append(bytes.Clone(data), ext...))
		}
	}
	c.reject("extension", label+": the artifact twice", append(bytes.Clone(data), data...))
	if isJSON {
		c.reject("extension", label+": {} appended", append(bytes.Clone(data), "{}"...))
		c.equivalent("whitespace outside the signed payload", label+": newline appended", append(bytes.Clone(data), '\n'))
		c.equivalent("whitespace outside the signed payload", label+": spaces and tabs appended", append(bytes.Clone(data), " \t\r\n"...))
	}
}

// --- image packages ---

// pkgParts splits a (format version 2) package into its fixed header,
// metadata, signature block (with its length field) and payload; the zero
// padding before the payload is dropped (buildPkg puts it back).
func pkgParts(t *testing.T, b []byte) (head, meta, sigBlock, payload []byte) {
	t.Helper()
	m := int(binary.BigEndian.Uint32(b[12:16]))
	off := int(binary.BigEndian.Uint32(b[16:20]))
	s := int(binary.BigEndian.Uint16(b[20+m:]))
	return b[:20], b[20 : 20+m], b[20+m : 22+m+s], b[off:]
}

func pkgPayload(t *testing.T, b []byte) []byte {
	_, _, _, p := pkgParts(t, b)
	return p
}

// buildPkg assembles a package from a fixed header (whose metadata length
// is rewritten), metadata, a signature block, zero padding and a payload.
// The payload offset depends on the metadata only, never on the signature
// block, so that a signature over buildPkg(head, meta, nil, nil) holds for
// buildPkg(head, meta, sig, payload): head's offset is kept if it leaves
// room for the longest signature block (2+33+72 bytes) without more than
// MaxHeaderPadding after an Ed25519 one, else the minimum for the longest.
func buildPkg(head, meta, sigBlock, payload []byte) []byte {
	const longest = 2 + 33 + 72
	h := bytes.Clone(head)
	binary.BigEndian.PutUint32(h[12:16], uint32(len(meta)))
	off := int(binary.BigEndian.Uint32(h[16:20]))
	if room := off - 20 - len(meta); room < longest || room > 2+33+64+imagepkg.MaxHeaderPadding {
		off = 20 + len(meta) + longest
		binary.BigEndian.PutUint32(h[16:20], uint32(off))
	}
	pad := make([]byte, max(0, off-20-len(meta)-len(sigBlock)))
	return bytes.Join([][]byte{h, meta, sigBlock, pad, payload}, nil)
}

// signPkg returns the signature block of a package whose first 20+M bytes
// are those of pkg, signed by s.
func signPkg(t *testing.T, s *testkeys.Signer, pkg []byte) []byte {
	t.Helper()
	msg := pkg[:20+binary.BigEndian.Uint32(pkg[12:16])]
	sig, err := s.Sign(context.Background(), append([]byte(imagepkg.SignatureContext), msg...))
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(s.Public().DER)
	alg := byte(2)
	if s.Public().Algorithm == spec.AlgorithmECDSAP256 {
		alg = 1
	}
	blk := binary.BigEndian.AppendUint16(nil, uint16(33+len(sig)))
	blk = append(append(append(blk, id[:]...), alg), sig...)
	return blk
}

func pack(t *testing.T, s *testkeys.Signer, version string, payload []byte, compression string) []byte {
	t.Helper()
	var out bytes.Buffer
	_, err := imagepkg.Pack(context.Background(), &out, bytes.NewReader(payload), imagepkg.PackOptions{
		Component: "rootfs", Type: imagepkg.TypeOS, Version: version, SecurityVersion: 3,
		Hardware: []string{"gw-100", "gw-200"}, Compression: compression,
		Created: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), TempDir: t.TempDir(),
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// samplePayload is deterministic, partly compressible bytes.
func samplePayload(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		if i%64 < 40 {
			b[i] = "upkit sample image line\n"[i%24]
		} else {
			b[i] = byte(rng.UintN(256))
		}
	}
	return b
}

// Re-signed structural mutations: ops whose result is invalid whatever
// signs it. Excluded: re-ordering (a different but valid encoding),
// deleting a member (some are optional), shortening or upper-casing a
// string (may give another valid name, e.g. "gw-10"), same-type values.
func resignable(m jsonMutation, optional map[string]bool) bool {
	switch {
	case m.op == "reorder", m.op == "truncated-value", m.op == "upper-case-value", strings.HasPrefix(m.op, "same-type:"):
		return false
	case m.op == "delete":
		// Only object members, and only required ones; array elements
		// may be removed validly (a hardware name, a signature).
		last := m.path[strings.LastIndex(m.path, ".")+1:]
		return !strings.HasSuffix(m.path, "]") && !optional[last]
	case m.op == "duplicate" && strings.HasSuffix(m.path, "]"):
		// A duplicated array element: distinctness rules reject it for
		// names, keys and images.
		return true
	}
	return true
}

func TestTamperCorpus(t *testing.T) {
	t.Run("package", func(t *testing.T) { t.Parallel(); packageCorpus(t) })
	t.Run("root", func(t *testing.T) { t.Parallel(); rootCorpus(t) })
	t.Run("release", func(t *testing.T) { t.Parallel(); releaseCorpus(t) })
	t.Run("delta", func(t *testing.T) { t.Parallel(); deltaCorpus(t) })
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		report(t)
	})
}

func packageCorpus(t *testing.T) {
	ctx := context.Background()
	key, other := testkeys.Ed25519(1), testkeys.Ed25519(9)
	trusted := key.Public()
	payloads := [][]byte{samplePayload(1, 3000), samplePayload(2, 3000), samplePayload(3, 700)}
	var c *corpus
	c = newCorpus(t, "image package (imagepkg.Verify)", func(b []byte) outcome {
		if _, err := imagepkg.Verify(ctx, bytes.NewReader(b), trusted); err != nil {
			return rejected
		}
		// Accepted: the compressed bytes are not signed, the payload's
		// sha256 is. Compare what the package yields with the originals.
		r, err := imagepkg.Open(bytes.NewReader(b))
		if err != nil {
			c.fail("package verified but does not open again: %v", err)
			return accepted
		}
		got, err := io.ReadAll(r.Payload())
		if err != nil {
			c.fail("package verified but its payload does not read again: %v", err)
			return accepted
		}
		for _, p := range payloads {
			if bytes.Equal(got, p) {
				return acceptedSame
			}
		}
		return accepted
	})
	pa := pack(t, key, "1.0.0", payloads[0], imagepkg.CompressionZstd)
	pb := pack(t, key, "1.0.1", payloads[1], imagepkg.CompressionZstd)
	pc := pack(t, key, "1.0.0", payloads[2], imagepkg.CompressionNone)
	for name, p := range map[string][]byte{"zstd package": pa, "other zstd package": pb, "uncompressed package": pc} {
		c.control(name, p)
	}
	// Every bit of the header (fixed fields, metadata, signature block);
	// the payload sampled (its bytes are covered by the signed sha256).
	byteMutations(c, "zstd package", pa, false, len(pa)-len(pkgPayload(t, pa)), 1, 8)
	byteMutations(c, "uncompressed package", pc, false, len(pc)-len(pkgPayload(t, pc)), 1, 8)

	// Swapped signature blocks between validly signed packages.
	hA, mA, sA, plA := pkgParts(t, pa)
	hB, mB, sB, plB := pkgParts(t, pb)
	hC, mC, sC, plC := pkgParts(t, pc)
	c.reject("swapped signature", "A with B's signature", buildPkg(hA, mA, sB, plA))
	c.reject("swapped signature", "B with A's signature", buildPkg(hB, mB, sA, plB))
	c.reject("swapped signature", "A with C's signature", buildPkg(hA, mA, sC, plA))
	c.reject("swapped signature", "C with A's signature", buildPkg(hC, mC, sA, plC))
	c.reject("swapped payload", "A's header with B's payload", buildPkg(hA, mA, sA, plB))
	c.reject("swapped payload", "B's header with A's payload", buildPkg(hB, mB, sB, plA))
	c.reject("swapped payload", "C's header with A's payload", buildPkg(hC, mC, sC, plA))
	// Signed by an untrusted key; an untrusted signature under the
	// trusted key's ID.
	msgA := pa[:20+len(mA)]
	c.reject("untrusted signer", "A signed by an untrusted key", buildPkg(hA, mA, signPkg(t, other, msgA), plA))
	forged := signPkg(t, other, msgA)
	tid := sha256.Sum256(trusted.DER)
	copy(forged[2:34], tid[:])
	c.reject("untrusted signer", "A signed by an untrusted key under the trusted key ID", buildPkg(hA, mA, forged, plA))
	c.reject("untrusted signer", "A with the signature block removed", buildPkg(hA, mA, nil, plA))

	// Metadata mutations: with the original signature (the signature is
	// over the exact bytes), and re-signed by the trusted key (the strict
	// parser must refuse them anyway).
	for _, src := range []struct {
		name                  string
		head, meta, sig, body []byte
	}{{"zstd package", hA, mA, sA, plA}, {"uncompressed package", hC, mC, sC, plC}} {
		tree, err := parseTree(src.meta)
		if err != nil {
			t.Fatal(err)
		}
		c.control(src.name+" with re-signed, re-encoded metadata", buildPkg(src.head, tree.bytes(), signPkg(t, key, buildPkg(src.head, tree.bytes(), nil, nil)), src.body))
		muts, err := mutateJSON(src.meta)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range muts {
			c.reject("metadata JSON, original signature", src.name+": "+m.name, buildPkg(src.head, m.doc, src.sig, src.body))
			if resignable(m, nil) && len(m.doc) < 1<<20 {
				msg := buildPkg(src.head, m.doc, nil, nil)
				c.reject("metadata JSON, re-signed", src.name+": "+m.name, buildPkg(src.head, m.doc, signPkg(t, key, msg), src.body))
			}
		}
	}
	// Oversized metadata and signature length fields, re-signed where
	// they are covered.
	for _, m := range []uint32{0, imagepkg.MaxMetadataSize + 1, 1<<32 - 1} {
		h := bytes.Clone(pa)
		binary.BigEndian.PutUint32(h[12:16], m)
		c.reject("oversized field", fmt.Sprintf("metadata length %d", m), h)
	}
	offA := binary.BigEndian.Uint32(pa[16:20])
	for _, off := range []uint32{0, 20, offA - 1, offA + 1, offA + imagepkg.MaxHeaderPadding + 1, 1<<32 - 1} {
		h := bytes.Clone(pa)
		binary.BigEndian.PutUint32(h[16:20], off)
		c.reject("oversized field", fmt.Sprintf("payload offset %d (signed %d)", off, offA), h)
	}
	for _, s := range []uint16{0, 34, 513, 1<<16 - 1} {
		h := bytes.Clone(pa)
		binary.BigEndian.PutUint16(h[20+len(mA):], s)
		c.reject("oversized field", fmt.Sprintf("signature block length %d", s), h)
	}
	c.finish()
}

// --- trust roots and releases ---

// envelopeJSON writes a DSSE envelope without validating it (Marshal
// refuses invalid payloads, and the corpus needs them).
func envelopeJSON(payloadType string, payload []byte, sigs []manifest.Signature) []byte {
	type sig struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	}
	e := struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []sig  `json:"signatures"`
	}{payloadType, base64.StdEncoding.EncodeToString(payload), []sig{}}
	for _, s := range sigs {
		e.Signatures = append(e.Signatures, sig{s.KeyID, base64.StdEncoding.EncodeToString(s.Sig)})
	}
	b, _ := json.MarshalIndent(e, "", "  ")
	return append(b, '\n')
}

func signEnv(t *testing.T, payloadType string, payload []byte, keys ...*testkeys.Signer) []byte {
	t.Helper()
	var sigs []manifest.Signature
	for _, k := range keys {
		s, err := k.Sign(context.Background(), manifest.PAE(payloadType, payload))
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, manifest.Signature{KeyID: k.KeyID(), Sig: s})
	}
	return envelopeJSON(payloadType, payload, sigs)
}

func parseEnv(t *testing.T, b []byte) *manifest.Envelope {
	t.Helper()
	e, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// envelopeMutations feeds c the mutations of a signed envelope env whose
// payload is signed by signers (exactly the threshold): byte level, the
// envelope's JSON (re-ordering members, duplicating a signature and
// re-indenting are equivalent: the signed payload is unchanged and a key
// is counted once), the payload's JSON with the original signatures and
// re-signed.
func envelopeMutations(t *testing.T, c *corpus, label string, env []byte, optional map[string]bool, flipStride, stride int, signers ...*testkeys.Signer) {
	byteMutations(c, label, env, true, 0, flipStride, stride)
	e := parseEnv(t, env)
	outer, err := mutateJSON(env)
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := parseTree(env)
	c.equivalent("whitespace outside the signed payload", label+": compact envelope", tree.bytes())
	for _, m := range outer {
		switch {
		case m.op == "reorder":
			c.equivalent("envelope members re-ordered", label+": "+m.name, m.doc)
		case m.op == "duplicate" && strings.HasPrefix(m.path, "signatures[") && strings.HasSuffix(m.path, "]"):
			c.equivalent("signature repeated", label+": "+m.name, m.doc)
		default:
			c.reject("envelope JSON", label+": "+m.name, m.doc)
		}
	}
	inner, err := mutateJSON(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	ptree, _ := parseTree(e.Payload)
	c.control(label+" re-signed after re-encoding", signEnv(t, e.PayloadType, ptree.bytes(), signers...))
	for _, m := range inner {
		c.reject("payload JSON, original signatures", label+": "+m.name, envelopeJSON(e.PayloadType, m.doc, e.Signatures))
		if resignable(m, optional) && len(m.doc) < 1<<20 {
			c.reject("payload JSON, re-signed", label+": "+m.name, signEnv(t, e.PayloadType, m.doc, signers...))
		}
	}
	// Too few signatures: each one dropped; the payload type changed.
	for i := range e.Signatures {
		sigs := append(append([]manifest.Signature{}, e.Signatures[:i]...), e.Signatures[i+1:]...)
		c.reject("signature removed", fmt.Sprintf("%s: signature %d removed", label, i), envelopeJSON(e.PayloadType, e.Payload, sigs))
		dup := append(append([]manifest.Signature{}, sigs...), sigs...)
		c.reject("signature removed", fmt.Sprintf("%s: signature %d removed, the others twice", label, i), envelopeJSON(e.PayloadType, e.Payload, dup))
	}
	for _, pt := range []string{manifest.RootPayloadType, manifest.ReleasePayloadType, "application/vnd.in-toto+json", strings.ToUpper(e.PayloadType)} {
		if pt != e.PayloadType {
			c.reject("payload type", label+": re-signed as "+pt, signEnv(t, pt, e.Payload, signers...))
		}
	}
}

// swapSignatures feeds c each payload with the other's signatures.
func swapSignatures(t *testing.T, c *corpus, label string, a, b []byte) {
	ea, eb := parseEnv(t, a), parseEnv(t, b)
	c.reject("swapped signature", label+": A's payload, B's signatures", envelopeJSON(ea.PayloadType, ea.Payload, eb.Signatures))
	c.reject("swapped signature", label+": B's payload, A's signatures", envelopeJSON(eb.PayloadType, eb.Payload, ea.Signatures))
	c.reject("swapped signature", label+": A's payload, no signatures", envelopeJSON(ea.PayloadType, ea.Payload, nil))
}

// fixture is the trust setting of the root and release corpora.
type fixture struct {
	rootKeys           []*testkeys.Signer // 2 of 3
	relKey, relKey2    *testkeys.Signer
	root1, root2       []byte // v1; v2 rotates the release key to relKey2
	trusted1, trusted2 *manifest.Root
	rel12, rel13       []byte // releases signed by relKey (root v1)
	rel12v2            []byte // release 12 signed by relKey2 (root v2)
}

func newFixture(t *testing.T) *fixture {
	ctx := context.Background()
	f := &fixture{
		rootKeys: []*testkeys.Signer{testkeys.Ed25519(1), testkeys.Ed25519(2), testkeys.Ed25519(3)},
		relKey:   testkeys.Ed25519(4), relKey2: testkeys.Ed25519(5),
	}
	mkRoot := func(version uint64, rel *testkeys.Signer) []byte {
		r := &manifest.Root{Version: version, Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Keys: map[string]manifest.Key{}}
		for _, k := range append(append([]*testkeys.Signer{}, f.rootKeys...), rel) {
			id, entry := manifest.KeyOf(k.Public())
			r.Keys[id] = entry
		}
		for _, k := range f.rootKeys {
			r.Roles.Root.KeyIDs = append(r.Roles.Root.KeyIDs, k.KeyID())
		}
		r.Roles.Root.Threshold = 2
		r.Roles.Release = manifest.Role{KeyIDs: []string{rel.KeyID()}, Threshold: 1}
		env, err := manifest.NewRootEnvelope(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range f.rootKeys[:2] {
			if err := manifest.Sign(ctx, env, k); err != nil {
				t.Fatal(err)
			}
		}
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.root1, f.root2 = mkRoot(1, f.relKey), mkRoot(2, f.relKey2)
	var err error
	if f.trusted1, err = manifest.VerifySelfSignedRoot(f.root1, now); err != nil {
		t.Fatal(err)
	}
	if f.trusted2, err = manifest.VerifyRoot(f.trusted1, f.root2, now); err != nil {
		t.Fatal(err)
	}
	digest := func(s string) string { h := sha256.Sum256([]byte(s)); return fmt.Sprintf("sha256:%x", h) }
	mkRel := func(version uint64, k *testkeys.Signer) []byte {
		r := &manifest.Release{
			Product: "gw", Version: version,
			Created: time.Date(2026, 5, 30, 0, 0, 0, 0, time.UTC), Expires: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
			Images: []manifest.Image{{
				Component: "rootfs", Type: "os", Version: "1.5.0", SecurityVersion: 3,
				Hardware: []string{"gw-100", "gw-200"},
				Package:  manifest.Blob{Digest: digest(fmt.Sprint("package", version)), Size: 4 << 20},
				Payload:  manifest.Blob{Digest: digest(fmt.Sprint("payload", version)), Size: 8 << 20},
				Deltas: []manifest.Delta{{
					FromPayloadDigest: digest("old payload"), FromPackageDigest: digest("old package"),
					Digest: digest(fmt.Sprint("delta", version)), Size: 4096,
				}},
			}, {
				Component: "app", Type: "app", Version: "2.0.0", SecurityVersion: 1,
				Hardware: []string{"gw-100"},
				Package:  manifest.Blob{Digest: digest(fmt.Sprint("app package", version)), Size: 1 << 20},
				Payload:  manifest.Blob{Digest: digest(fmt.Sprint("app payload", version)), Size: 2 << 20},
			}},
		}
		env, err := manifest.NewReleaseEnvelope(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := manifest.Sign(ctx, env, k); err != nil {
			t.Fatal(err)
		}
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.rel12, f.rel13, f.rel12v2 = mkRel(12, f.relKey), mkRel(13, f.relKey), mkRel(12, f.relKey2)
	return f
}

// memStore is a device.Store that hands every Load the provisioned state
// and forgets every later Save, so that each Check starts from the same
// state.
type memStore struct {
	mu sync.Mutex
	st *device.State
}

func (s *memStore) Load(context.Context) (*device.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, device.ErrNoState
	}
	return s.st.Clone(), nil
}

func (s *memStore) Save(_ context.Context, st *device.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		s.st = st.Clone()
	}
	return nil
}

// newDevice returns a device provisioned with root (v1), hardware gw-100.
func newDevice(t *testing.T, root []byte) *device.Device {
	dir := t.TempDir()
	d, err := device.New(device.Config{
		Store: &memStore{}, Slots: device.NewFileSlots(dir+"/slots", nil),
		Hardware: "gw-100", StagingDir: dir + "/staging",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Provision(context.Background(), root, now); err != nil {
		t.Fatal(err)
	}
	return d
}

// knownGaps are re-signed release documents (signed by the trusted release
// key, so not reachable by an attacker without it) that the manifest
// parser accepts although they break a strictness rule; reported to the
// manifest package's owner. Each must still be accepted (the test says
// when one is fixed) and is counted apart in the report.
// knownGaps lists accepted mutations that are known defects, so that the
// test fails when one is fixed and the list gets cleaned up. Empty since
// manifest refuses missing members and negative numbers.
var knownGaps = map[string]string{}

// Optional members of roots and releases: deleting them is valid.
var optionalMembers = map[string]bool{"deltas": true, "fromPackageDigest": true}

func rootCorpus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	self := newCorpus(t, "trust root v1 (manifest.VerifySelfSignedRoot)", func(b []byte) outcome {
		if _, err := manifest.VerifySelfSignedRoot(b, now); err != nil {
			return rejected
		}
		return accepted
	})
	self.control("root v1", f.root1)
	envelopeMutations(t, self, "root v1", f.root1, optionalMembers, 1, 4, f.rootKeys[:2]...)
	swapSignatures(t, self, "root v1/v2", f.root1, f.root2)
	self.reject("wrong document", "a release envelope", f.rel12)
	self.finish()

	rot := newCorpus(t, "trust root v2 rotation (manifest.VerifyRoot)", func(b []byte) outcome {
		if _, err := manifest.VerifyRoot(f.trusted1, b, now); err != nil {
			return rejected
		}
		return accepted
	})
	rot.control("root v2", f.root2)
	envelopeMutations(t, rot, "root v2", f.root2, optionalMembers, 1, 4, f.rootKeys[:2]...)
	swapSignatures(t, rot, "root v2/v1", f.root2, f.root1)
	rot.reject("rollback", "root v1 offered as the next root", f.root1)
	rot.finish()

	// The device walks the chain [v2] before a release signed by v2's
	// release key: a mutated v2 must stop the release.
	d := newDevice(t, f.root1)
	dev := newCorpus(t, "trust root v2 in a chain (device.Check)", func(b []byte) outcome {
		if _, err := d.Check(ctx, f.rel12v2, [][]byte{b}, now); err != nil {
			return rejected
		}
		return accepted
	})
	dev.control("root v2", f.root2)
	envelopeMutations(t, dev, "root v2", f.root2, optionalMembers, 8, 16, f.rootKeys[:2]...)
	swapSignatures(t, dev, "root v2/v1", f.root2, f.root1)
	dev.finish()
}

func releaseCorpus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rel := newCorpus(t, "release manifest (manifest.VerifyRelease)", func(b []byte) outcome {
		if _, err := manifest.VerifyRelease(f.trusted1, b, now); err != nil {
			return rejected
		}
		return accepted
	})
	rel.control("release 12", f.rel12)
	rel.gapsExpected = true
	envelopeMutations(t, rel, "release 12", f.rel12, optionalMembers, 1, 4, f.relKey)
	swapSignatures(t, rel, "release 12/13", f.rel12, f.rel13)
	rel.reject("wrong document", "the root envelope", f.root1)
	rel.reject("untrusted signer", "release 12 signed by the next root's release key", f.rel12v2)
	rel.finish()

	d := newDevice(t, f.root1)
	dev := newCorpus(t, "release manifest (device.Check)", func(b []byte) outcome {
		if _, err := d.Check(ctx, b, nil, now); err != nil {
			return rejected
		}
		return accepted
	})
	dev.control("release 12", f.rel12)
	dev.gapsExpected = true
	envelopeMutations(t, dev, "release 12", f.rel12, optionalMembers, 8, 16, f.relKey)
	swapSignatures(t, dev, "release 12/13", f.rel12, f.rel13)
	dev.finish()
}

// --- deltas ---

// crcTable is CRC-32C, the header checksum of docs/FORMAT.md (delta header).
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// reCRC rewrites the header checksum of a patch, so that a changed header
// field passes the CRC and reaches the field checks.
func reCRC(p []byte) []byte {
	binary.LittleEndian.PutUint32(p[112:], crc32.Checksum(p[:112], crcTable))
	return p
}

func deltaCorpus(t *testing.T) {
	ctx := context.Background()
	old := samplePayload(10, 8192)
	newB := bytes.Clone(old)
	copy(newB[1000:], "version 2 of the image, with a changed block")
	newB = append(newB[:5000], append(samplePayload(11, 300), newB[5000:]...)...)
	newC := bytes.Clone(old)
	copy(newC[3000:], "another version")
	opts := &delta.Options{BlockSize: 2048, CtrlSize: 512, ModelBits: delta.MinModelBits}
	mk := func(to []byte) []byte {
		var b bytes.Buffer
		if _, err := delta.Create(ctx, old, to, &b, opts); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	pB, pC := mk(newB), mk(newC)
	if binary.LittleEndian.Uint32(pB[112:]) != crc32.Checksum(pB[:112], crcTable) {
		t.Fatal("the header CRC is not CRC-32C little-endian at offset 112: update reCRC to docs/FORMAT.md (delta header)")
	}
	applyTo := func(base, want []byte) verifier {
		return func(b []byte) outcome {
			var out bytes.Buffer
			if _, err := delta.Apply(ctx, bytes.NewReader(base), int64(len(base)), bytes.NewReader(b), &out); err != nil {
				return rejected
			}
			if bytes.Equal(out.Bytes(), want) {
				return acceptedSame
			}
			return accepted
		}
	}
	c := newCorpus(t, "delta (delta.Apply on the right base)", applyTo(old, newB))
	c.control("delta old->B", pB)
	byteMutations(c, "delta old->B", pB, false, len(pB), 1, 1)

	// Header fields changed, with the CRC recomputed.
	type field struct {
		name string
		off  int
		size int
		vals []uint64
	}
	for _, fl := range []field{
		{"version", 8, 2, []uint64{0, 2, 0xffff}},
		{"algorithm", 10, 1, []uint64{0, 2, 0xff}},
		{"model bits", 11, 1, []uint64{0, 11, 13, 20, 21, 0xff}},
		{"window", 12, 4, []uint64{0, 512, 1023, 1025, 2048, 8 << 20, 16 << 20, 1<<32 - 1}},
		{"block size", 16, 4, []uint64{0, 1, 1024, 2047, 2049, 4 << 20, 4<<20 + 1, 1<<32 - 1}},
		{"control size", 20, 4, []uint64{0, 1, 511, 513, 1 << 20, 1<<20 + 1, 1<<32 - 1}},
		{"old size", 24, 8, []uint64{0, 8191, 8193, 1 << 40, 1<<40 + 1, 1<<64 - 1}},
		{"new size", 32, 8, []uint64{0, uint64(len(newB)) - 1, uint64(len(newB)) + 1, 1 << 40, 1<<40 + 1, 1<<64 - 1}},
		{"body size", 40, 8, []uint64{0, 1, uint64(len(pB)-delta.HeaderSize) - 1, uint64(len(pB)-delta.HeaderSize) + 1, 1 << 41, 1<<41 + 1, 1<<64 - 1}},
	} {
		for _, v := range fl.vals {
			p := bytes.Clone(pB)
			switch fl.size {
			case 1:
				p[fl.off] = byte(v)
			case 2:
				binary.LittleEndian.PutUint16(p[fl.off:], uint16(v))
			case 4:
				binary.LittleEndian.PutUint32(p[fl.off:], uint32(v))
			case 8:
				binary.LittleEndian.PutUint64(p[fl.off:], v)
			}
			if bytes.Equal(p, pB) {
				continue
			}
			c.reject("header field, CRC fixed", fmt.Sprintf("%s := %d", fl.name, v), reCRC(p))
		}
	}
	for i := 48; i < 112; i += 3 {
		p := bytes.Clone(pB)
		p[i] ^= 0x10
		c.reject("header field, CRC fixed", fmt.Sprintf("digest byte %d flipped", i), reCRC(p))
	}
	sumC := sha256.Sum256(newC)
	p := bytes.Clone(pB)
	copy(p[80:112], sumC[:])
	c.reject("header field, CRC fixed", "new sha256 := sha256 of another image", reCRC(p))
	// Swapped header and body between two valid patches of the same base.
	c.reject("swapped header/body", "B's header, C's body", reCRC(append(bytes.Clone(pB[:delta.HeaderSize]), pC[delta.HeaderSize:]...)))
	hdr := bytes.Clone(pC[:delta.HeaderSize])
	binary.LittleEndian.PutUint64(hdr[40:], uint64(len(pB)-delta.HeaderSize))
	c.reject("swapped header/body", "C's header (body size fixed), B's body", reCRC(append(hdr, pB[delta.HeaderSize:]...)))
	c.finish()

	// Wrong bases: the valid patch against changed old images must fail
	// before writing anything.
	wb := newCorpus(t, "delta (delta.Apply on a wrong base)", nil)
	check := func(name string, base []byte) {
		wb.verify = func(b []byte) outcome {
			var out bytes.Buffer
			_, err := delta.Apply(ctx, bytes.NewReader(base), int64(len(base)), bytes.NewReader(b), &out)
			if err == nil {
				return accepted
			}
			if !errors.Is(err, delta.ErrWrongBase) || out.Len() != 0 {
				wb.fail("wrong base: %s: %v after writing %d bytes (want ErrWrongBase before any output)", name, err, out.Len())
			}
			return rejected
		}
		wb.reject("wrong base", name, pB)
	}
	for i := 0; i < len(old); i += 17 {
		base := bytes.Clone(old)
		base[i] ^= 1 << (i % 8)
		check(fmt.Sprintf("old image with bit %d of byte %d flipped", i%8, i), base)
	}
	for _, n := range []int{0, 1, len(old) / 2, len(old) - 1} {
		check(fmt.Sprintf("old image truncated to %d bytes", n), bytes.Clone(old[:n]))
	}
	check("old image with a byte appended", append(bytes.Clone(old), 0))
	check("the new image as the base", newB)
	wb.finish()
}

// --- report ---

func report(t *testing.T) {
	results.mu.Lock()
	defer results.mu.Unlock()
	order := []string{
		"image package (imagepkg.Verify)",
		"trust root v1 (manifest.VerifySelfSignedRoot)",
		"trust root v2 rotation (manifest.VerifyRoot)",
		"trust root v2 in a chain (device.Check)",
		"release manifest (manifest.VerifyRelease)",
		"release manifest (device.Check)",
		"delta (delta.Apply on the right base)",
		"delta (delta.Apply on a wrong base)",
	}
	byKind := map[string]*corpus{}
	for _, c := range results.corpora {
		byKind[c.kind] = c
	}
	var b strings.Builder
	b.WriteString(docHeader)
	b.WriteString("| artifact (verifier) | mutations | rejected | accepted | panics | equivalent forms (accepted by design) | accepted with bit-identical output | known gaps (re-signed, below) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var total classStats
	for _, k := range order {
		c := byKind[k]
		if c == nil {
			t.Fatalf("no results for %s", k)
		}
		var s classStats
		for _, cs := range c.classes {
			s.n += cs.n
			s.rejected += cs.rejected
			s.accepted += cs.accepted
			s.panics += cs.panics
			s.equiv += cs.equiv
			s.same += cs.same
			s.gaps += cs.gaps
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d |\n", k, s.n, s.rejected, s.accepted, s.panics, s.equiv, s.same, s.gaps)
		total.gaps += s.gaps
		total.n += s.n
		total.rejected += s.rejected
		total.accepted += s.accepted
		total.panics += s.panics
		total.equiv += s.equiv
		total.same += s.same
	}
	fmt.Fprintf(&b, "| **total** | **%d** | **%d** | **%d** | **%d** | **%d** | **%d** | **%d** |\n", total.n, total.rejected, total.accepted, total.panics, total.equiv, total.same, total.gaps)
	b.WriteString("\nBy class of mutation:\n\n| artifact | class | mutations |\n|---|---|---:|\n")
	for _, k := range order {
		c := byKind[k]
		var names []string
		for n := range c.classes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", k, n, c.classes[n].n)
		}
	}
	b.WriteString("\nAccepted with a bit-identical payload or image (the signed or header sha256 of the output holds):\n\n")
	for _, k := range order {
		for _, n := range byKind[k].sameNames {
			fmt.Fprintf(&b, "- %s: %s\n", k, n)
		}
	}
	b.WriteString("\nKnown gaps: documents re-signed by the trusted release key that the\nmanifest parser accepts although they break a strictness rule (not\nreachable without the key; counted apart, listed in `knownGaps`):\n\n")
	var gaps []string
	for g, why := range knownGaps {
		gaps = append(gaps, fmt.Sprintf("- %s (%s)\n", g, why))
	}
	sort.Strings(gaps)
	b.WriteString(strings.Join(gaps, ""))
	b.WriteString(docFooter)
	t.Logf("tamper corpus: %d mutations, %d accepted, %d panics (%d equivalent forms accepted by design, %d accepted with a bit-identical payload or image)",
		total.n, total.accepted, total.panics, total.equiv, total.same)
	got := b.String()
	if *update {
		if err := os.WriteFile(docPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(docPath)
	if err != nil || string(want) != got {
		t.Errorf("%s is not this run's figures: run go test ./internal/testutil/tampertest -run TestTamperCorpus -update (err %v)", docPath, err)
	}
}

const docHeader = `# Tamper and garbage corpus

Generated by ` + "`go test ./internal/testutil/tampertest -run TestTamperCorpus -update`" + `
(internal/testutil/tampertest/tamper_test.go); the test fails when this page does
not match its figures, so they are those of the current code. Everything
is deterministic: Ed25519 TEST-ONLY keys (internal/testutil/testkeys), fixed times,
seeded pseudo-random bytes.

For each artifact kind the test builds small valid artifacts, checks that
the verifier the device uses accepts them unmodified (and re-signed after
re-encoding, so that re-signed mutations are refused for what they change,
not for how they are signed), then feeds it every mutation below, each
under recover(). A mutation counts as accepted when the verifier returns
no error.

- **Byte level**: in binary headers (a package's fixed header,
  metadata and signature block; the whole of a delta patch), every byte
  offset gets each of its 8 single-bit flips, overwriting with 0x00 and
  0xff, deleting the byte, inserting a byte and truncating there. Elsewhere
  (a package's payload, the JSON envelopes) every byte offset gets one
  single-bit flip (the bit rotates with the offset) and every 8th (package
  payload) or 4th (envelope) offset the other operations; the device.Check
  rows sample every 8th offset for flips and every 16th for the rest, as
  they repeat the manifest rows through the device. Extensions: 1, 2, 3, 8,
  64 and 4096 zero, 0xff and random bytes, 1 MiB of zeros, and the
  artifact twice.
- **JSON structure** (package metadata, envelopes, root and release
  payloads), at every member and element: removed, duplicated (same and
  other value, and a duplicate whose key is spelled with a ` + "`\\u00XX`" + ` escape),
  key renamed (upper-case first letter, unknown name, Unicode look-alike:
  Cyrillic/Greek letters, KELVIN SIGN and LONG S which encoding/json folds
  to k and s), value replaced by every other JSON type, oversized strings
  (+65 bytes, +70000 bytes, 2 MiB), look-alike, upper-case, space-padded,
  NUL-terminated, truncated and invalid-UTF-8 strings, numbers negated,
  fractional, with exponent, leading zero, overflowing; every object
  re-ordered. Inside a signed payload each is fed once with the original
  signature(s) and once re-signed by the trusted key(s) (except re-ordering,
  deleting optional members, shortening or upper-casing a string: those
  can give another valid document, which a trusted key may sign).
- **Signatures**: signatures swapped between two validly signed artifacts
  of the same kind; each signature removed (the envelopes carry exactly the
  threshold), the remaining ones repeated; payload re-signed under another
  payload type; a package signed by an untrusted key, also under the
  trusted key's ID; the signature block removed.
- **Deltas**: every header field set to boundary and out-of-range values
  with the header CRC recomputed (so the field checks, not the CRC, must
  refuse them), digest bytes flipped, the new digest replaced by another
  image's, header and body swapped between two patches; and the valid
  patch against wrong bases (a bit flipped every 17 bytes, truncated,
  extended, the new image), each of which must fail with ErrWrongBase
  before writing a byte.

Equivalent forms, accepted by design and asserted to be accepted:
whitespace outside the signed payload (a trailing newline, a compact
envelope), envelope members re-ordered and a signature repeated (a key is
counted once). Re-ordering the members of the signed payload is not
equivalent: signatures cover the payload bytes, and it is refused.

A delta is not signed itself (the release manifest pins its sha256, which
the device checks before applying it); ` + "`delta.Apply`" + ` checks the output's
sha256 against the header. Likewise the compressed bytes of a package's
payload are not signed; the metadata signs the uncompressed payload's
size and sha256, which Verify checks while streaming. "Accepted with
bit-identical output" counts mutations that still yield exactly the
expected payload or image (listed below): zstd bits the decoder ignores,
header bounds loosened (a larger block or control size), and bits of a
delta's body that still decode to the same image (a version 4 body has
no checksum of its own, where zstd's frame checksum used to refuse them;
the output's sha256 is what counts). None yielded any other output. On a device such mutations are refused anyway:
the release manifest pins every package and delta by the sha256 of its
file bytes.

`

const docFooter = `
Every row has 0 accepted and 0 panics; the test fails otherwise and prints
the mutation. A known gap that starts being refused fails the test too, so
that this list shrinks when the parser is fixed.
`
