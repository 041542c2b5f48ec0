package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/upkit/upkit/spec"
)

// Image is a parsed MCUboot image: its header, TLVs and trailer. Parse
// checks the structure only; Verify checks the hash and the signature.
type Image struct {
	Header Header
	// Size is the size of the file (Parse) or of the image up to the end
	// of its TLV area (ParseSlot).
	Size int64
	// ProtectedOffset is where the protected TLV area starts (the end of
	// the body); TLVOffset where the unprotected one starts, which is also
	// the size of the signed region; End where it ends.
	ProtectedOffset, TLVOffset, End int64
	// ProtectedTLVs and TLVs are the entries of both areas, in order.
	ProtectedTLVs, TLVs []TLV

	// SecurityCounter is the SEC_CNT TLV, if HasSecurityCounter.
	SecurityCounter    uint32
	HasSecurityCounter bool
	// Hash is the SHA256 TLV: the SHA-256 of the signed region.
	Hash []byte
	// KeyHash is the KEYHASH TLV, or the SHA-256 of the PUBKEY TLV; nil
	// for an unsigned image.
	KeyHash []byte
	// PublicKey is the PUBKEY TLV (DER SubjectPublicKeyInfo), if present.
	PublicKey []byte
	// Signature is the signature TLV's value, SignatureType its type
	// (TLVECDSASig or TLVEd25519); nil and 0 for an unsigned image.
	Signature     []byte
	SignatureType uint16
	// Trailer describes the padding imgtool --pad adds up to the slot
	// size; nil when the file ends with the TLV area.
	Trailer *Trailer
}

// Trailer is the padding of an image padded to its slot (imgtool --pad): not
// signed, it asks MCUboot to install the image at the next boot.
type Trailer struct {
	Offset   int64 // first byte after the TLV area
	Size     int64 // bytes to the end of the file
	MaxAlign int   // from the boot magic: 8, 16 or 32
	Erased   byte  // value of the padding bytes: 0xff or 0x00
	ImageOK  byte  // 0x01 (confirmed: --confirm) or Erased (test or plain --pad)
}

// Confirmed reports whether the trailer marks the image permanent.
func (t *Trailer) Confirmed() bool { return t != nil && t.ImageOK == 0x01 }

// KeyID returns the hex key ID the image names (upkit's key ID: the SHA-256
// of the DER SubjectPublicKeyInfo), or "" for an unsigned image.
func (img *Image) KeyID() string {
	if img.KeyHash == nil {
		return ""
	}
	return hex.EncodeToString(img.KeyHash)
}

// Algorithm returns the signature algorithm (spec.AlgorithmECDSAP256 or
// spec.AlgorithmEd25519), or "" for an unsigned image.
func (img *Image) Algorithm() string {
	switch img.SignatureType {
	case TLVECDSASig:
		return spec.AlgorithmECDSAP256
	case TLVEd25519:
		return spec.AlgorithmEd25519
	}
	return ""
}

// Digest returns the image hash as "sha256:<hex>".
func (img *Image) Digest() string { return "sha256:" + hex.EncodeToString(img.Hash) }

// IsImage reports whether head, the first bytes of a file, starts with the
// image magic (it tells an MCUboot image from other files; Parse checks the
// rest).
func IsImage(head []byte) bool {
	return len(head) >= 4 && binary.LittleEndian.Uint32(head) == Magic
}

// Parse reads an MCUboot image file of size bytes from r: header, both TLV
// areas and, when the file goes on past the TLV area, the trailer padding
// imgtool --pad writes. It reads only the header and the TLV areas (at most
// 64 KiB each), never the body, and trusts no size before checking it. It
// checks the structure, not the hash or the signature (see Verify):
//
//   - ErrMagic: not an MCUboot image;
//   - ErrTruncated: the file ends before a declared area;
//   - ErrMalformed: header size below 32, a non-zero reserved field, a TLV
//     area whose magic or total is wrong or whose entries do not fill it
//     exactly, a repeated SHA256, key, signature or SEC_CNT TLV, a
//     signature before its key, an unknown type in the unprotected area (it
//     is not signed; MCUboot refuses such images too);
//   - ErrUnsupported: encrypted or compressed images, and RSA, SHA-384/512
//     or pure signatures;
//   - ErrTrailingData: bytes after the TLV area that are not a trailer:
//     erased bytes (all 0xff or all 0x00), an image_ok byte of erased or
//     1, and a boot magic in the last 16 bytes;
//   - ErrTooLarge: size above MaxSlotSize.
func Parse(r io.ReaderAt, size int64) (*Image, error) {
	img, err := parse(r, size)
	if err != nil {
		return nil, err
	}
	img.Size = size
	if img.End < size {
		t, err := parseTrailer(r, img.End, size)
		if err != nil {
			return nil, err
		}
		img.Trailer = t
	}
	return img, nil
}

// ParseSlot reads the image at the start of a flash slot of slotSize bytes:
// what follows its TLV area (erased flash, the trailer MCUboot keeps there,
// an older image's leftovers) is ignored. Errors are Parse's.
func ParseSlot(r io.ReaderAt, slotSize int64) (*Image, error) {
	img, err := parse(r, slotSize)
	if err != nil {
		return nil, err
	}
	img.Size = img.End
	return img, nil
}

func parse(r io.ReaderAt, size int64) (*Image, error) {
	if size > MaxSlotSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxSlotSize)
	}
	hb, err := readAt(r, 0, FixedHeaderSize, size)
	if len(hb) >= 4 && binary.LittleEndian.Uint32(hb) != Magic {
		return nil, fmt.Errorf("%w: first word 0x%08x, want 0x%08x", ErrMagic, binary.LittleEndian.Uint32(hb), Magic)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrTruncated, err)
	}
	h := Header{
		Magic:            binary.LittleEndian.Uint32(hb[0:]),
		LoadAddr:         binary.LittleEndian.Uint32(hb[4:]),
		HeaderSize:       binary.LittleEndian.Uint16(hb[8:]),
		ProtectedTLVSize: binary.LittleEndian.Uint16(hb[10:]),
		ImageSize:        binary.LittleEndian.Uint32(hb[12:]),
		Flags:            binary.LittleEndian.Uint32(hb[16:]),
		Version: Version{
			Major: hb[20], Minor: hb[21],
			Revision: binary.LittleEndian.Uint16(hb[22:]),
			Build:    binary.LittleEndian.Uint32(hb[24:]),
		},
		Pad1: binary.LittleEndian.Uint32(hb[28:]),
	}
	switch {
	case h.HeaderSize < FixedHeaderSize:
		return nil, fmt.Errorf("%w: header size %d, at least %d", ErrMalformed, h.HeaderSize, FixedHeaderSize)
	case h.Pad1 != 0:
		return nil, fmt.Errorf("%w: reserved header word (offset 28) is 0x%x, want 0", ErrMalformed, h.Pad1)
	case h.Flags&^knownFlags != 0:
		return nil, fmt.Errorf("%w: header flags %v (encrypted and compressed images are not supported)", ErrUnsupported, FlagNames(h.Flags&^knownFlags))
	case h.ProtectedTLVSize != 0 && h.ProtectedTLVSize < tlvInfoSize:
		return nil, fmt.Errorf("%w: protected TLV size %d, less than its %d-byte info header", ErrMalformed, h.ProtectedTLVSize, tlvInfoSize)
	}
	img := &Image{Header: h}
	img.ProtectedOffset = int64(h.HeaderSize) + int64(h.ImageSize)
	if img.ProtectedOffset > size {
		return nil, fmt.Errorf("%w: header says %d bytes of header and %d of body, the image has %d", ErrTruncated, h.HeaderSize, h.ImageSize, size)
	}
	if h.ProtectedTLVSize != 0 {
		if img.ProtectedTLVs, err = readTLVArea(r, img.ProtectedOffset, size, ProtectedTLVInfoMagic, "protected TLV area"); err != nil {
			return nil, err
		}
		if tot := areaSize(img.ProtectedTLVs, img.ProtectedOffset); tot != int64(h.ProtectedTLVSize) {
			return nil, fmt.Errorf("%w: protected TLV area is %d bytes, the header says %d", ErrMalformed, tot, h.ProtectedTLVSize)
		}
	}
	img.TLVOffset = img.ProtectedOffset + int64(h.ProtectedTLVSize)
	if img.TLVs, err = readTLVArea(r, img.TLVOffset, size, TLVInfoMagic, "TLV area"); err != nil {
		return nil, err
	}
	img.End = img.TLVOffset + areaSize(img.TLVs, img.TLVOffset)
	if err := img.interpret(); err != nil {
		return nil, err
	}
	return img, nil
}

// areaSize recovers an area's total from where its last entry ends (the
// total was checked against the entries while reading).
func areaSize(tlvs []TLV, off int64) int64 {
	if len(tlvs) == 0 {
		return tlvInfoSize
	}
	last := tlvs[len(tlvs)-1]
	return last.Offset + tlvHeaderSize + int64(len(last.Value)) - off
}

// readTLVArea reads the TLV area at off: info header, then entries that
// must fill its total exactly.
func readTLVArea(r io.ReaderAt, off, size int64, magic uint16, what string) ([]TLV, error) {
	info, err := readAt(r, off, tlvInfoSize, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at offset %d: %w", ErrTruncated, what, off, err)
	}
	if m := binary.LittleEndian.Uint16(info); m != magic {
		return nil, fmt.Errorf("%w: %s at offset %d starts 0x%04x, want 0x%04x", ErrMalformed, what, off, m, magic)
	}
	tot := int64(binary.LittleEndian.Uint16(info[2:]))
	if tot < tlvInfoSize {
		return nil, fmt.Errorf("%w: %s at offset %d is %d bytes, less than its info header", ErrMalformed, what, off, tot)
	}
	area, err := readAt(r, off, tot, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at offset %d declares %d bytes: %w", ErrTruncated, what, off, tot, err)
	}
	var tlvs []TLV
	for p := int64(tlvInfoSize); p < tot; {
		if tot-p < tlvHeaderSize {
			return nil, fmt.Errorf("%w: %s at offset %d: %d stray bytes at its end", ErrMalformed, what, off, tot-p)
		}
		typ := binary.LittleEndian.Uint16(area[p:])
		n := int64(binary.LittleEndian.Uint16(area[p+2:]))
		if p+tlvHeaderSize+n > tot {
			return nil, fmt.Errorf("%w: %s: TLV %s at offset %d has %d bytes, past the end of the area", ErrMalformed, what, TLVName(typ), off+p, n)
		}
		if len(tlvs) == MaxTLVs {
			return nil, fmt.Errorf("%w: %s: more than %d TLVs", ErrMalformed, what, MaxTLVs)
		}
		tlvs = append(tlvs, TLV{Type: typ, Value: bytes.Clone(area[p+tlvHeaderSize : p+tlvHeaderSize+n]), Offset: off + p})
		p += tlvHeaderSize + n
	}
	return tlvs, nil
}

// interpret checks which TLVs appear where and keeps the ones upkit uses.
func (img *Image) interpret() error {
	for _, t := range img.ProtectedTLVs {
		switch t.Type {
		case TLVSecCnt:
			if img.HasSecurityCounter {
				return fmt.Errorf("%w: two SEC_CNT TLVs", ErrMalformed)
			}
			if len(t.Value) != 4 {
				return fmt.Errorf("%w: SEC_CNT TLV of %d bytes, want 4", ErrMalformed, len(t.Value))
			}
			img.SecurityCounter, img.HasSecurityCounter = binary.LittleEndian.Uint32(t.Value), true
		case TLVKeyHash, TLVPublicKey, TLVSHA256, TLVSHA384, TLVSHA512, TLVRSA2048, TLVECDSASig, TLVRSA3072, TLVEd25519, TLVSigPure:
			return fmt.Errorf("%w: TLV %s in the protected area", ErrMalformed, TLVName(t.Type))
		}
		// Other protected TLVs (dependencies, boot record, UUIDs, vendor
		// TLVs) are signed and kept as they are.
	}
	for _, t := range img.TLVs {
		switch t.Type {
		case TLVSHA256:
			if img.Hash != nil {
				return fmt.Errorf("%w: two SHA256 TLVs", ErrMalformed)
			}
			if len(t.Value) != sha256.Size {
				return fmt.Errorf("%w: SHA256 TLV of %d bytes", ErrMalformed, len(t.Value))
			}
			img.Hash = t.Value
		case TLVKeyHash, TLVPublicKey:
			if img.KeyHash != nil {
				return fmt.Errorf("%w: more than one key TLV (upkit verifies one key and signature)", ErrMalformed)
			}
			if t.Type == TLVKeyHash {
				if len(t.Value) != sha256.Size {
					return fmt.Errorf("%w: KEYHASH TLV of %d bytes", ErrMalformed, len(t.Value))
				}
				img.KeyHash = t.Value
			} else {
				if len(t.Value) == 0 {
					return fmt.Errorf("%w: empty PUBKEY TLV", ErrMalformed)
				}
				sum := sha256.Sum256(t.Value)
				img.KeyHash, img.PublicKey = sum[:], t.Value
			}
		case TLVECDSASig, TLVEd25519:
			if img.Signature != nil {
				return fmt.Errorf("%w: more than one signature TLV", ErrMalformed)
			}
			if img.KeyHash == nil {
				return fmt.Errorf("%w: signature TLV before any key TLV", ErrMalformed)
			}
			if len(t.Value) == 0 {
				return fmt.Errorf("%w: empty signature TLV", ErrMalformed)
			}
			img.Signature, img.SignatureType = t.Value, t.Type
		case TLVSHA384, TLVSHA512, TLVRSA2048, TLVRSA3072, TLVSigPure:
			return fmt.Errorf("%w: %s TLV (upkit verifies SHA-256 with ECDSA P-256 or Ed25519)", ErrUnsupported, TLVName(t.Type))
		case 0x30, 0x31, 0x32, 0x33, 0x34, 0x70, 0x71, 0x72, 0x73:
			return fmt.Errorf("%w: %s TLV (encrypted or compressed image)", ErrUnsupported, TLVName(t.Type))
		default:
			return fmt.Errorf("%w: TLV %s in the unprotected area, where nothing covers it", ErrMalformed, TLVName(t.Type))
		}
	}
	if img.Hash == nil {
		return fmt.Errorf("%w: no SHA256 TLV", ErrMalformed)
	}
	if img.KeyHash != nil && img.Signature == nil {
		return fmt.Errorf("%w: a key TLV without a signature", ErrMalformed)
	}
	return nil
}

// parseTrailer checks the bytes [off, size) as imgtool --pad writes them.
func parseTrailer(r io.ReaderAt, off, size int64) (*Trailer, error) {
	n := size - off
	if n < 2*bootMagicSize {
		return nil, fmt.Errorf("%w: %d bytes after the TLV area at offset %d (too short for a trailer)", ErrTrailingData, n, off)
	}
	magic, err := readAt(r, size-bootMagicSize, bootMagicSize, size)
	if err != nil {
		return nil, fmt.Errorf("%w: trailer: %w", ErrTruncated, err)
	}
	t := &Trailer{Offset: off, Size: n}
	switch {
	case bytes.Equal(magic, bootMagic):
		t.MaxAlign = 8
	case bytes.Equal(magic[2:], bootMagicTail):
		t.MaxAlign = int(binary.LittleEndian.Uint16(magic))
		if t.MaxAlign != 16 && t.MaxAlign != 32 {
			return nil, fmt.Errorf("%w: trailer magic names alignment %d (want 16 or 32)", ErrTrailingData, t.MaxAlign)
		}
	default:
		return nil, fmt.Errorf("%w: %d bytes after the TLV area at offset %d, not ending with a boot magic", ErrTrailingData, n, off)
	}
	okAt := size - int64(alignUp(bootMagicSize, t.MaxAlign)+t.MaxAlign)
	if okAt < off {
		return nil, fmt.Errorf("%w: %d bytes after the TLV area, too short for a trailer aligned to %d", ErrTrailingData, n, t.MaxAlign)
	}
	first := off
	if first == okAt {
		first++
	}
	b, err := readAt(r, first, 1, size)
	if err != nil {
		return nil, fmt.Errorf("%w: trailer: %w", ErrTruncated, err)
	}
	t.Erased = b[0]
	if t.Erased != 0xff && t.Erased != 0 {
		return nil, fmt.Errorf("%w: byte 0x%02x at offset %d after the TLV area, want erased flash (0xff or 0x00)", ErrTrailingData, t.Erased, first)
	}
	buf := make([]byte, 32<<10)
	for p := off; p < size-bootMagicSize; {
		k := min(int64(len(buf)), size-bootMagicSize-p)
		if _, err := r.ReadAt(buf[:k], p); err != nil && !(errors.Is(err, io.EOF) && k == 0) {
			return nil, fmt.Errorf("%w: trailer: %w", ErrTruncated, err)
		}
		for i, c := range buf[:k] {
			at := p + int64(i)
			if at == okAt {
				t.ImageOK = c
				if c != t.Erased && c != 0x01 {
					return nil, fmt.Errorf("%w: trailer image_ok byte at offset %d is 0x%02x, want 0x01 or erased", ErrTrailingData, at, c)
				}
				continue
			}
			if c != t.Erased {
				return nil, fmt.Errorf("%w: byte 0x%02x at offset %d in the trailer padding, want 0x%02x", ErrTrailingData, c, at, t.Erased)
			}
		}
		p += k
	}
	return t, nil
}

// readAt reads n bytes at off of a file of size bytes.
func readAt(r io.ReaderAt, off, n, size int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > size {
		avail := max(size-off, 0)
		b := make([]byte, min(avail, n))
		if len(b) > 0 {
			if k, err := r.ReadAt(b, off); k < len(b) {
				return b[:k], fmt.Errorf("reading %d bytes at offset %d: %w", len(b), off, err)
			}
		}
		return b, fmt.Errorf("%d bytes needed at offset %d, the image has %d", n, off, size)
	}
	b := make([]byte, n)
	k, err := r.ReadAt(b, off)
	if k < int(n) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return b[:k], fmt.Errorf("reading %d bytes at offset %d: %w", n, off, err)
	}
	return b, nil
}
