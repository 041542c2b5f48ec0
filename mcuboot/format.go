// Package mcuboot writes, parses and verifies MCUboot images: the format
// that MCUboot (the secure bootloader of Zephyr, NuttX, Mynewt, RIOT and
// bare-metal Cortex-M firmware) boots, byte for byte what upstream
// `imgtool sign` writes. upkit uses it so that microcontroller firmware is
// signed by the same release keys (files, PKCS#11, KMS) and listed in the
// same threshold-signed releases as the rest of a product.
//
// An image is, in this order (all integers little-endian):
//
//	header (32 bytes) + header padding       HeaderSize bytes
//	body (the firmware)                      ImageSize bytes
//	protected TLV area (SEC_CNT, ...)        ProtectedTLVSize bytes, signed
//	TLV area (SHA256, KEYHASH, signature)    not signed
//	optional trailer padding (imgtool --pad) up to the slot size, not signed
//
// The signed region is everything before the (unprotected) TLV area; its
// SHA-256 is the SHA256 TLV, and the signature is ECDSA P-256 over that
// digest (ASN.1 DER) or Ed25519 over the 32 digest bytes, as MCUboot's
// bootutil checks them. The KEYHASH TLV is the SHA-256 of the signer's DER
// SubjectPublicKeyInfo, which is exactly upkit's key ID: a verifier finds
// the key among its trusted keys by it.
//
// The package uses the standard library and spec only, so the device
// library can link it. The layout is documented field by field in
// docs/FORMAT.md ("MCUboot images").
package mcuboot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/upkit/upkit/spec"
)

// Fixed values of the format (MCUboot's bootutil/image.h).
const (
	// Magic is the first word of every image (IMAGE_MAGIC).
	Magic uint32 = 0x96f3b83d
	// FixedHeaderSize is the size of the image header structure; the
	// header area (HeaderSize) may be larger, padded.
	FixedHeaderSize = 32
	// TLVInfoMagic starts the (unprotected) TLV area.
	TLVInfoMagic uint16 = 0x6907
	// ProtectedTLVInfoMagic starts the protected TLV area.
	ProtectedTLVInfoMagic uint16 = 0x6908
	// tlvInfoSize is the size of a TLV area's info header (magic, total).
	tlvInfoSize = 4
	// tlvHeaderSize is the size of one TLV's type and length.
	tlvHeaderSize = 4
)

// TLV types upkit reads or writes (MCUboot's IMAGE_TLV_*).
const (
	TLVKeyHash    uint16 = 0x01 // SHA-256 of the public key (DER SubjectPublicKeyInfo)
	TLVPublicKey  uint16 = 0x02 // the public key itself (imgtool --public-key-format full)
	TLVSHA256     uint16 = 0x10 // SHA-256 of the signed region
	TLVSHA384     uint16 = 0x11
	TLVSHA512     uint16 = 0x12
	TLVRSA2048    uint16 = 0x20
	TLVECDSASig   uint16 = 0x22 // ECDSA P-256 (or P-384) signature, ASN.1 DER
	TLVRSA3072    uint16 = 0x23
	TLVEd25519    uint16 = 0x24 // Ed25519 signature, 64 bytes
	TLVSigPure    uint16 = 0x25
	TLVDependency uint16 = 0x40 // protected: another image's minimum version
	TLVSecCnt     uint16 = 0x50 // protected: security counter, uint32
	TLVBootRecord uint16 = 0x60 // protected: CBOR boot record (measured boot)
	TLVUUIDVID    uint16 = 0x74 // protected: vendor UUID
	TLVUUIDCID    uint16 = 0x75 // protected: image class UUID
)

// Header flags (IMAGE_F_*).
const (
	FlagPIC              uint32 = 0x001
	FlagEncryptedAES128  uint32 = 0x004
	FlagEncryptedAES256  uint32 = 0x008
	FlagNonBootable      uint32 = 0x010
	FlagRAMLoad          uint32 = 0x020
	FlagROMFixed         uint32 = 0x100
	FlagCompressedLZMA1  uint32 = 0x200
	FlagCompressedLZMA2  uint32 = 0x400
	FlagCompressedARMThb uint32 = 0x800
)

// knownFlags are the flags this package accepts in images it parses;
// encryption and compression are refused (ErrUnsupported): upkit can
// neither check nor hand over what it cannot read.
const knownFlags = FlagPIC | FlagNonBootable | FlagRAMLoad | FlagROMFixed

// Limits.
const (
	// MaxSlotSize bounds the slot size of images Sign writes (the body is
	// held in memory) and the size of images Parse accepts.
	MaxSlotSize = 256 << 20
	// MaxTLVs bounds the number of entries of one TLV area.
	MaxTLVs = 64
)

// Errors. Every error of the package wraps one of them (test with
// errors.Is). Those that refuse an image (malformed, unsupported or
// untrusted) also match ErrRejected.
var (
	// ErrRejected matches every refusal of an image: ErrMagic,
	// ErrTruncated, ErrMalformed, ErrUnsupported, ErrTrailingData,
	// ErrTooLarge, ErrHash, ErrUnknownKey, ErrSignature and
	// ErrSecurityCounter. It is never returned alone.
	ErrRejected = errors.New("mcuboot: image rejected")

	// ErrMagic: the data does not start with the MCUboot image magic.
	ErrMagic = rejection("mcuboot: not an MCUboot image (bad magic)")
	// ErrTruncated: the data ends before the structure it declares.
	ErrTruncated = rejection("mcuboot: image truncated")
	// ErrMalformed: a header field or TLV area breaks the format's rules.
	ErrMalformed = rejection("mcuboot: malformed image")
	// ErrUnsupported: a valid MCUboot feature upkit does not verify
	// (encryption, compression, RSA, SHA-384/512, pure signatures).
	ErrUnsupported = rejection("mcuboot: unsupported image feature")
	// ErrTrailingData: bytes after the TLV area that are not an image
	// trailer as imgtool --pad writes it.
	ErrTrailingData = rejection("mcuboot: unexpected data after the TLV area")
	// ErrTooLarge: a size above MaxSlotSize.
	ErrTooLarge = rejection("mcuboot: image too large")
	// ErrHash: the SHA256 TLV is not the digest of the signed region.
	ErrHash = rejection("mcuboot: image hash mismatch")
	// ErrUnknownKey: the image's key hash names none of the trusted keys.
	ErrUnknownKey = rejection("mcuboot: image signed by an unknown key")
	// ErrSignature: the signature is missing or does not verify.
	ErrSignature = rejection("mcuboot: bad image signature")
	// ErrSecurityCounter: the image has no security counter, or one below
	// the minimum the verifier requires.
	ErrSecurityCounter = rejection("mcuboot: security counter too low or missing")
	// ErrInvalidOptions: Sign options out of range.
	ErrInvalidOptions = errors.New("mcuboot: invalid options")
	// ErrSignerMisbehaving: the signer returned a signature of the wrong
	// shape, for another key, or one that does not verify.
	ErrSignerMisbehaving = errors.New("mcuboot: signer misbehaving")
)

// rejection is a sentinel that also matches ErrRejected.
func rejection(msg string) error { return spec.Sentinel(msg, ErrRejected) }

// Version is an image version as the header stores it: major.minor.revision
// plus a build number.
type Version struct {
	Major    uint8
	Minor    uint8
	Revision uint16
	Build    uint32
}

// String returns the version in upkit's semantic-version form:
// "MAJOR.MINOR.REVISION", followed by "+BUILD" when the build number is not
// zero. ParseVersion reads it back.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	if v.Build != 0 {
		s += "+" + strconv.FormatUint(uint64(v.Build), 10)
	}
	return s
}

// ImgtoolString returns the version as imgtool prints it ("1.2.3+0").
func (v Version) ImgtoolString() string {
	return fmt.Sprintf("%d.%d.%d+%d", v.Major, v.Minor, v.Revision, v.Build)
}

// ParseVersion reads a semantic version that an MCUboot header can hold:
// MAJOR.MINOR.PATCH with an optional +BUILD, each a decimal number without
// leading zeros (as imgtool's -v), MAJOR and MINOR at most 255, PATCH at
// most 65535, BUILD at most 4294967295. Pre-release versions ("-rc.1") and
// other build metadata are refused: the header has no room for them, and a
// device comparing header versions would see a different version than the
// release lists.
func ParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%w: version %q: %s", ErrInvalidOptions, s, why)
	}
	core, build, hasBuild := strings.Cut(s, "+")
	if strings.Contains(core, "-") {
		return bad("an MCUboot header has no pre-release part")
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.PATCH[+BUILD]")
	}
	limits := []uint64{0xff, 0xff, 0xffff}
	var n [4]uint64
	for i, p := range parts {
		v, err := parseDecimal(p, limits[i])
		if err != nil {
			return bad(fmt.Sprintf("part %d: %v", i+1, err))
		}
		n[i] = v
	}
	if hasBuild {
		v, err := parseDecimal(build, 0xffffffff)
		if err != nil {
			return bad(fmt.Sprintf("build number: %v (an MCUboot header holds a number, not other build metadata)", err))
		}
		n[3] = v
	}
	return Version{Major: uint8(n[0]), Minor: uint8(n[1]), Revision: uint16(n[2]), Build: uint32(n[3])}, nil
}

func parseDecimal(s string, max uint64) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, errors.New("leading zero")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, fmt.Errorf("%s is above %d", s, max)
	}
	return v, nil
}

// Header is the 32-byte image header.
type Header struct {
	Magic            uint32
	LoadAddr         uint32 // RAM load address (FlagRAMLoad) or fixed flash address (FlagROMFixed)
	HeaderSize       uint16 // bytes before the body, at least FixedHeaderSize
	ProtectedTLVSize uint16 // bytes of the protected TLV area (0 if none)
	ImageSize        uint32 // bytes of the body
	Flags            uint32
	Version          Version
	Pad1             uint32
}

// TLV is one entry of a TLV area.
type TLV struct {
	Type   uint16
	Value  []byte
	Offset int64 // of the entry's type field in the image
}

// TLVName names a TLV type as imgtool's dumpinfo does.
func TLVName(t uint16) string {
	switch t {
	case TLVKeyHash:
		return "KEYHASH"
	case TLVPublicKey:
		return "PUBKEY"
	case TLVSHA256:
		return "SHA256"
	case TLVSHA384:
		return "SHA384"
	case TLVSHA512:
		return "SHA512"
	case TLVRSA2048:
		return "RSA2048"
	case TLVECDSASig:
		return "ECDSASIG"
	case TLVRSA3072:
		return "RSA3072"
	case TLVEd25519:
		return "ED25519"
	case TLVSigPure:
		return "SIG_PURE"
	case TLVDependency:
		return "DEPENDENCY"
	case TLVSecCnt:
		return "SEC_CNT"
	case TLVBootRecord:
		return "BOOT_RECORD"
	case TLVUUIDVID:
		return "UUID_VID"
	case TLVUUIDCID:
		return "UUID_CID"
	}
	return fmt.Sprintf("0x%02x", t)
}

// FlagNames lists the names of the flags set in f.
func FlagNames(f uint32) []string {
	names := []struct {
		f    uint32
		name string
	}{
		{FlagPIC, "PIC"}, {FlagEncryptedAES128, "ENCRYPTED_AES128"}, {FlagEncryptedAES256, "ENCRYPTED_AES256"},
		{FlagNonBootable, "NON_BOOTABLE"}, {FlagRAMLoad, "RAM_LOAD"}, {FlagROMFixed, "ROM_FIXED"},
		{FlagCompressedLZMA1, "COMPRESSED_LZMA1"}, {FlagCompressedLZMA2, "COMPRESSED_LZMA2"},
		{FlagCompressedARMThb, "COMPRESSED_ARM_THUMB"},
	}
	var out []string
	for _, n := range names {
		if f&n.f != 0 {
			out = append(out, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		out = append(out, fmt.Sprintf("0x%x", f))
	}
	return out
}

// Boot magic at the end of an image trailer (imgtool pads with it).
var (
	// bootMagic is the trailer magic when the maximum write alignment
	// is 8.
	bootMagic = []byte{0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80}
	// bootMagicTail is the last 14 bytes of the trailer magic for larger
	// alignments, after the alignment as a little-endian uint16.
	bootMagicTail = []byte{0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a}
)

const bootMagicSize = 16

// trailerMagic returns the boot magic for a maximum alignment.
func trailerMagic(maxAlign int) []byte {
	if maxAlign == 8 {
		return bootMagic
	}
	return append([]byte{byte(maxAlign), byte(maxAlign >> 8)}, bootMagicTail...)
}

func alignUp(n, align int) int { return (n + align - 1) &^ (align - 1) }
