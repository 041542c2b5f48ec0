package mcuboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"

	"github.com/upkit/upkit/spec"
)

// Options are imgtool sign's options that upkit supports, with imgtool's
// names and defaults. HeaderSize and SlotSize have no default (imgtool
// requires -H and -S).
type Options struct {
	// Version is the header version (-v).
	Version Version
	// SecurityCounter is written as the protected SEC_CNT TLV (-s N).
	// upkit always writes it: it is the package's security version.
	SecurityCounter uint32
	// HeaderSize is the size of the header area before the body (-H),
	// FixedHeaderSize .. 65535.
	HeaderSize int
	// PadHeader prepends HeaderSize bytes of ErasedValue to the input
	// (--pad-header). Without it the input's first HeaderSize bytes must be
	// zero (a build that reserved room for the header) and the header
	// replaces its first 32 bytes.
	PadHeader bool
	// SlotSize is the size of the slot the image must fit in with its
	// trailer (-S), 1 .. MaxSlotSize.
	SlotSize int64
	// Pad pads the image to SlotSize with a trailer that asks MCUboot to
	// install it (--pad). Confirm (--confirm) and Test (--test) imply it:
	// Confirm also marks the image permanent (image_ok = 1).
	Pad, Confirm, Test bool
	// Align is the flash write alignment for the trailer (--align): 1, 2,
	// 4, 8, 16 or 32; 0 means 1.
	Align int
	// MaxAlign is the largest write alignment of the slots (--max-align):
	// 8, 16 or 32; 0 means max(8, Align).
	MaxAlign int
	// MaxSectors bounds the swap status area of the trailer (-M); 0 means
	// 128.
	MaxSectors int
	// OverwriteOnly sizes the trailer for overwrite-only upgrades
	// (--overwrite-only).
	OverwriteOnly bool
	// LoadAddr sets a RAM load address and the RAM_LOAD flag (-L);
	// ROMFixed a fixed flash address and the ROM_FIXED flag (-F). At most
	// one of them may be non-zero.
	LoadAddr, ROMFixed uint32
	// EraseZero says erased flash reads as 0 instead of 0xff (-R 0): the
	// value of header (PadHeader) and trailer (Pad) padding.
	EraseZero bool
}

// Defaults as imgtool's.
const (
	DefaultMaxSectors = 128
	defaultMaxAlign   = 8
)

func (o Options) erased() byte {
	if o.EraseZero {
		return 0
	}
	return 0xff
}

func (o Options) withDefaults() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if o.Align == 0 {
		o.Align = 1
	}
	switch o.Align {
	case 1, 2, 4, 8, 16, 32:
	default:
		return bad("alignment %d: want 1, 2, 4, 8, 16 or 32", o.Align)
	}
	if o.MaxAlign == 0 {
		o.MaxAlign = max(defaultMaxAlign, o.Align)
	}
	switch o.MaxAlign {
	case 8, 16, 32:
	default:
		return bad("maximum alignment %d: want 8, 16 or 32", o.MaxAlign)
	}
	if o.MaxSectors == 0 {
		o.MaxSectors = DefaultMaxSectors
	}
	if o.MaxSectors < 1 || o.MaxSectors > 1<<16 {
		return bad("maximum sectors %d: want 1 .. 65536", o.MaxSectors)
	}
	if o.HeaderSize < FixedHeaderSize || o.HeaderSize > 0xffff {
		return bad("header size %d: want %d .. 65535", o.HeaderSize, FixedHeaderSize)
	}
	if o.SlotSize < 1 || o.SlotSize > MaxSlotSize {
		return bad("slot size %d: want 1 .. %d", o.SlotSize, MaxSlotSize)
	}
	if o.LoadAddr != 0 && o.ROMFixed != 0 {
		return bad("a load address and a fixed flash address cannot be set together")
	}
	if o.Confirm || o.Test {
		o.Pad = true
	}
	return o, nil
}

// TrailerSize is the size of the trailer imgtool reserves at the end of the
// slot for these options (swap status, flags, magic): an image must leave
// that much room, and --pad writes it.
func (o Options) TrailerSize() (int64, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, err
	}
	return o.trailerSize(), nil
}

func (o Options) trailerSize() int64 {
	magicAlign := alignUp(bootMagicSize, o.MaxAlign)
	if o.OverwriteOnly {
		return int64(o.MaxAlign*2 + magicAlign)
	}
	return int64(o.MaxSectors*3*o.Align + o.MaxAlign*4 + magicAlign)
}

// Sign reads the firmware from body and returns the signed MCUboot image:
// the bytes `imgtool sign` writes for the same input, key and options (with
// -s SecurityCounter and the default --public-key-format hash). With an
// Ed25519 key the result is identical to imgtool's; with ECDSA only the
// signature (and, through its length, the TLV area's size) differs.
//
// MCUboot signs a different message per algorithm (ECDSA P-256: the signed
// region, hashed by the signer; Ed25519: the region's 32-byte SHA-256), so
// the algorithm must be known before signing. A spec.PublicSigner gives it
// with its public key, and its KeyID and signature are checked before the
// image is returned. Another signer is asked to sign the region first: an
// ECDSA signature (an ASN.1 DER pair) is kept, and a 64-byte Ed25519
// signature (over the wrong message) is discarded and the signer asked
// again, for the digest.
//
// The body is held in memory, at most SlotSize bytes. Errors wrap
// ErrInvalidOptions (options, or a body that does not start with
// HeaderSize zero bytes without PadHeader), ErrTooLarge (the image and its
// trailer do not fit the slot) or ErrSignerMisbehaving.
func Sign(ctx context.Context, body io.Reader, opts Options, s spec.Signer) ([]byte, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidOptions)
	}
	keyHash, err := hex.DecodeString(s.KeyID())
	if err != nil || len(keyHash) != sha256.Size || hex.EncodeToString(keyHash) != s.KeyID() {
		return nil, fmt.Errorf("%w: signer key ID %q is not 64 lowercase hex digits", ErrInvalidOptions, s.KeyID())
	}
	img, err := opts.headerAndBody(body)
	if err != nil {
		return nil, err
	}
	hs := opts.HeaderSize
	imageSize := len(img) - hs

	// Protected TLVs: the security counter.
	prot := binary.LittleEndian.AppendUint16(nil, ProtectedTLVInfoMagic)
	prot = binary.LittleEndian.AppendUint16(prot, tlvInfoSize+tlvHeaderSize+4)
	prot = appendTLV(prot, TLVSecCnt, binary.LittleEndian.AppendUint32(nil, opts.SecurityCounter))

	var flags uint32
	addr := opts.LoadAddr
	if opts.LoadAddr != 0 {
		flags |= FlagRAMLoad
	}
	if opts.ROMFixed != 0 {
		flags |= FlagROMFixed
		addr = opts.ROMFixed
	}
	h := Header{
		Magic: Magic, LoadAddr: addr, HeaderSize: uint16(hs), ProtectedTLVSize: uint16(len(prot)),
		ImageSize: uint32(imageSize), Flags: flags, Version: opts.Version,
	}
	copy(img, h.marshal())
	img = append(img, prot...)
	digest := sha256.Sum256(img)

	alg, sig, err := signRegion(ctx, s, img, digest[:])
	if err != nil {
		return nil, err
	}
	img = append(img, tlvArea(digest[:], keyHash, alg, sig)...)

	trailer := opts.trailerSize()
	if int64(len(img))+trailer > opts.SlotSize {
		return nil, fmt.Errorf("%w: image of %d bytes and a %d-byte trailer exceed the %d-byte slot", ErrTooLarge, len(img), trailer, opts.SlotSize)
	}
	if opts.Pad {
		img = padToSlot(img, opts)
	}
	return img, nil
}

// headerAndBody reads the firmware from body (at most SlotSize bytes) and
// returns it with the room for the header before it: HeaderSize erased
// bytes (PadHeader), or the body's own first HeaderSize bytes, which must
// be zero.
func (o Options) headerAndBody(body io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, o.SlotSize+1))
	if err != nil {
		return nil, fmt.Errorf("mcuboot: reading the body: %w", err)
	}
	if int64(len(data)) > o.SlotSize {
		return nil, fmt.Errorf("%w: the input is larger than the %d-byte slot", ErrTooLarge, o.SlotSize)
	}
	hs := o.HeaderSize
	if o.PadHeader {
		img := make([]byte, hs, hs+len(data)+512)
		for i := range img {
			img[i] = o.erased()
		}
		return append(img, data...), nil
	}
	if len(data) < hs {
		return nil, fmt.Errorf("%w: the input is %d bytes, shorter than the %d-byte header it should start with (use --pad-header to add one)", ErrInvalidOptions, len(data), hs)
	}
	for _, b := range data[:hs] {
		if b != 0 {
			return nil, fmt.Errorf("%w: the input does not start with %d zero bytes of room for the header (use --pad-header to add one)", ErrInvalidOptions, hs)
		}
	}
	img := make([]byte, len(data), len(data)+512)
	copy(img, data)
	return img, nil
}

// tlvArea is the unprotected TLV area: the image hash, the key hash and the
// signature (of the algorithm alg).
func tlvArea(digest, keyHash []byte, alg string, sig []byte) []byte {
	sigType := TLVECDSASig
	if alg == spec.AlgorithmEd25519 {
		sigType = TLVEd25519
	}
	tlvs := make([]byte, tlvInfoSize, tlvInfoSize+3*tlvHeaderSize+2*sha256.Size+len(sig))
	tlvs = appendTLV(tlvs, TLVSHA256, digest)
	tlvs = appendTLV(tlvs, TLVKeyHash, keyHash)
	tlvs = appendTLV(tlvs, sigType, sig)
	binary.LittleEndian.PutUint16(tlvs, TLVInfoMagic)
	binary.LittleEndian.PutUint16(tlvs[2:], uint16(len(tlvs)))
	return tlvs
}

// padToSlot appends erased bytes up to the slot size, the trailer magic at
// the end, and image_ok = 1 for a confirmed image (imgtool's pad_to).
func padToSlot(img []byte, opts Options) []byte {
	start := len(img)
	out := make([]byte, opts.SlotSize)
	copy(out, img)
	for i := start; i < len(out); i++ {
		out[i] = opts.erased()
	}
	copy(out[len(out)-bootMagicSize:], trailerMagic(opts.MaxAlign))
	if opts.Confirm && !opts.OverwriteOnly {
		out[len(out)-(alignUp(bootMagicSize, opts.MaxAlign)+opts.MaxAlign)] = 0x01
	}
	return out
}

func appendTLV(b []byte, typ uint16, value []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

func (h Header) marshal() []byte {
	b := make([]byte, 0, FixedHeaderSize)
	b = binary.LittleEndian.AppendUint32(b, h.Magic)
	b = binary.LittleEndian.AppendUint32(b, h.LoadAddr)
	b = binary.LittleEndian.AppendUint16(b, h.HeaderSize)
	b = binary.LittleEndian.AppendUint16(b, h.ProtectedTLVSize)
	b = binary.LittleEndian.AppendUint32(b, h.ImageSize)
	b = binary.LittleEndian.AppendUint32(b, h.Flags)
	b = append(b, h.Version.Major, h.Version.Minor)
	b = binary.LittleEndian.AppendUint16(b, h.Version.Revision)
	b = binary.LittleEndian.AppendUint32(b, h.Version.Build)
	b = binary.LittleEndian.AppendUint32(b, h.Pad1)
	return b
}

// signRegion signs the signed region as MCUboot expects for the signer's
// algorithm (see Sign) and checks the result.
func signRegion(ctx context.Context, s spec.Signer, region, digest []byte) (string, []byte, error) {
	var key *spec.PublicKey
	alg := ""
	if ps, ok := s.(spec.PublicSigner); ok && ps.Public() != nil {
		key = ps.Public()
		alg = key.Algorithm
	}
	msg := region
	if alg == spec.AlgorithmEd25519 {
		msg = digest
	}
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		return "", nil, fmt.Errorf("mcuboot: signing the image: %w", err)
	}
	if alg == "" { // unknown before signing: the signature tells
		switch {
		case isECDSADER(sig):
			alg = spec.AlgorithmECDSAP256
		case len(sig) == 64:
			alg = spec.AlgorithmEd25519
			if sig, err = s.Sign(ctx, digest); err != nil {
				return "", nil, fmt.Errorf("mcuboot: signing the image: %w", err)
			}
		default:
			return "", nil, fmt.Errorf("%w: cannot tell the algorithm of a %d-byte signature", ErrSignerMisbehaving, len(sig))
		}
	}
	switch alg {
	case spec.AlgorithmEd25519:
		if len(sig) != 64 {
			return "", nil, fmt.Errorf("%w: Ed25519 signature of %d bytes", ErrSignerMisbehaving, len(sig))
		}
	case spec.AlgorithmECDSAP256:
		if !isECDSADER(sig) {
			return "", nil, fmt.Errorf("%w: ECDSA signature is not an ASN.1 DER pair of 8..72 bytes", ErrSignerMisbehaving)
		}
	default:
		return "", nil, fmt.Errorf("%w: algorithm %q", spec.ErrUnsupportedKey, alg)
	}
	if key != nil {
		if key.ID != s.KeyID() {
			return "", nil, fmt.Errorf("%w: KeyID %s does not match its public key %s", ErrSignerMisbehaving, s.KeyID(), key.ID)
		}
		if err := verifyDigest(key, digest, sig); err != nil {
			return "", nil, fmt.Errorf("%w: the signature does not verify with the signer's own key", ErrSignerMisbehaving)
		}
	}
	return alg, sig, nil
}

// isECDSADER reports whether sig is exactly an ASN.1 DER SEQUENCE of two
// positive INTEGERs, 8..72 bytes long (what a P-256 signature can be).
func isECDSADER(sig []byte) bool {
	if len(sig) < 8 || len(sig) > 72 {
		return false
	}
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &rs)
	if err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return false
	}
	// asn1.Unmarshal accepts some non-minimal encodings: insist on DER.
	again, err := asn1.Marshal(rs)
	return err == nil && bytes.Equal(again, sig)
}
