package signing

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/upkit/upkit/spec"
)

// Environment variables read by PKCS11OptionsFromEnv.
const (
	// PKCS11ModuleEnv names the PKCS#11 module (shared library) to load when
	// the key URI has no module-path attribute.
	PKCS11ModuleEnv = "UPKIT_PKCS11_MODULE"
	// PKCS11PINEnv holds the token's user PIN when the key URI has no
	// pin-source attribute.
	PKCS11PINEnv = "UPKIT_PKCS11_PIN"
)

// Limits on PKCS#11 key references.
const (
	// MaxPKCS11URILen bounds the length of a pkcs11: key reference.
	MaxPKCS11URILen = 4096
	// MaxPINFileSize bounds a file named by pin-source.
	MaxPINFileSize = 1024
)

var (
	// ErrPKCS11URI is returned for a pkcs11: key reference upkit cannot use.
	ErrPKCS11URI = errors.New("signing: bad pkcs11: key URI")
	// ErrPKCS11Module is returned when no PKCS#11 module is configured or it cannot be loaded.
	ErrPKCS11Module = errors.New("signing: PKCS#11 module")
	// ErrPKCS11PIN is returned when the token PIN is missing, unreadable or refused by the token.
	ErrPKCS11PIN = errors.New("signing: PKCS#11 PIN")
	// ErrPKCS11Token is returned when no token in the module matches the key URI.
	ErrPKCS11Token = errors.New("signing: PKCS#11 token not found")
	// ErrPKCS11Object is returned when the token holds no usable key pair matching
	// the key URI, or more than one.
	ErrPKCS11Object = errors.New("signing: PKCS#11 key not found")
	// ErrPKCS11 is returned for any other failure reported by the module or token.
	ErrPKCS11 = errors.New("signing: PKCS#11")
	// ErrPKCS11Unavailable is returned by a build without cgo, which cannot
	// load PKCS#11 modules.
	ErrPKCS11Unavailable = errors.New("signing: PKCS#11 support not built in (build upkit with CGO_ENABLED=1)")
)

// IsPKCS11Ref reports whether ref is a PKCS#11 key URI ("pkcs11:...").
func IsPKCS11Ref(ref string) bool { return strings.HasPrefix(ref, "pkcs11:") }

// PKCS11URI is a parsed RFC 7512 PKCS#11 URI naming a key pair in a token.
//
// The token is selected by exactly one of Token (token=, the token label),
// Serial (serial=) or SlotID (slot-id=); the key by Object (object=, the
// CKA_LABEL), ID (id=, the CKA_ID) or both.
type PKCS11URI struct {
	Token  string
	Serial string
	SlotID *uint
	Object string
	ID     []byte
	// ModulePath is the module-path query attribute: the PKCS#11 module to
	// load. Empty means the caller's default (UPKIT_PKCS11_MODULE).
	ModulePath string
	// PINSource is the pin-source query attribute: a file holding the PIN,
	// as "file:/path", "file:///path" or a plain path. Empty means the
	// caller's default (UPKIT_PKCS11_PIN).
	PINSource string
}

// ParsePKCS11URI parses a pkcs11: key reference (RFC 7512):
//
//	pkcs11:token=LABEL;object=KEYLABEL[;id=%01%02][?module-path=/path/lib.so&pin-source=file:/path/pin]
//
// Path attributes (separated by ';'): token, serial, slot-id, object, id,
// and type (only "private"). Query attributes (after '?', separated by
// '&'): module-path and pin-source. Values are percent-decoded. Unknown or
// repeated attributes, a token selected in more than one way, and a key
// named by neither object nor id are errors (ErrPKCS11URI). pin-value is
// refused: a PIN in a key reference ends up in shell history, CI logs and
// process listings.
func ParsePKCS11URI(s string) (*PKCS11URI, error) {
	if len(s) > MaxPKCS11URILen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPKCS11URI, len(s), MaxPKCS11URILen)
	}
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with pkcs11:", ErrPKCS11URI, s)
	}
	path, query, _ := strings.Cut(rest, "?")
	if strings.Contains(query, "#") || strings.Contains(path, "#") {
		return nil, fmt.Errorf("%w: fragments (#) are not allowed", ErrPKCS11URI)
	}
	p := uriParser{u: &PKCS11URI{}, seen: map[string]bool{}}
	if err := p.attrs(path, ";", false); err != nil {
		return nil, err
	}
	if err := p.attrs(query, "&", true); err != nil {
		return nil, err
	}
	if err := p.check(s); err != nil {
		return nil, err
	}
	return p.u, nil
}

// uriParser is one run of ParsePKCS11URI.
type uriParser struct {
	u    *PKCS11URI
	seen map[string]bool
}

// attrs reads the path (sep ";") or query (sep "&") attributes.
func (p *uriParser) attrs(part, sep string, inQuery bool) error {
	if part == "" {
		return nil
	}
	for _, a := range strings.Split(part, sep) {
		name, raw, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return fmt.Errorf("%w: attribute %q is not name=value", ErrPKCS11URI, a)
		}
		if name == "pin-value" {
			return fmt.Errorf("%w: pin-value is refused: a PIN written in a key reference ends up in shell history, CI logs and process listings; put it in a file named by pin-source=file:/path or in the %s environment variable", ErrPKCS11URI, PKCS11PINEnv)
		}
		if p.seen[name] {
			return fmt.Errorf("%w: attribute %s given twice", ErrPKCS11URI, name)
		}
		p.seen[name] = true
		val, err := url.PathUnescape(raw)
		if err != nil {
			return fmt.Errorf("%w: attribute %s: bad percent-encoding: %v", ErrPKCS11URI, name, err)
		}
		isQuery := name == "module-path" || name == "pin-source" || name == "module-name"
		if isQuery != inQuery {
			if isQuery {
				return fmt.Errorf("%w: %s is a query attribute: write it after '?', as in pkcs11:token=T;object=K?%s=...", ErrPKCS11URI, name, name)
			}
			if strings.HasPrefix(name, "x-") {
				continue // vendor attribute in the query: ignored (RFC 7512 §2.3)
			}
			return fmt.Errorf("%w: %s is a path attribute: write it before '?', separated by ';'", ErrPKCS11URI, name)
		}
		if err := p.set(name, val); err != nil {
			return err
		}
	}
	return nil
}

// set stores one attribute.
func (p *uriParser) set(name, val string) error {
	u := p.u
	switch name {
	case "token":
		u.Token = val
	case "serial":
		u.Serial = val
	case "slot-id":
		n, err := strconv.ParseUint(val, 10, strconv.IntSize-1)
		if err != nil {
			return fmt.Errorf("%w: slot-id %q is not a decimal slot number", ErrPKCS11URI, val)
		}
		id := uint(n)
		u.SlotID = &id
	case "object":
		u.Object = val
	case "id":
		if val == "" {
			return fmt.Errorf("%w: empty id", ErrPKCS11URI)
		}
		u.ID = []byte(val)
	case "type":
		if val != "private" {
			return fmt.Errorf("%w: type=%s: upkit uses private keys (type=private, or leave type out)", ErrPKCS11URI, val)
		}
	case "module-path", "pin-source":
		if val == "" {
			return fmt.Errorf("%w: empty %s", ErrPKCS11URI, name)
		}
		if name == "module-path" {
			u.ModulePath = val
		} else {
			u.PINSource = val
		}
	case "module-name":
		return fmt.Errorf("%w: module-name is not supported: give the module's file with module-path= or %s", ErrPKCS11URI, PKCS11ModuleEnv)
	default:
		if !strings.HasPrefix(name, "x-") { // vendor-specific: ignored (RFC 7512 §2.3)
			return fmt.Errorf("%w: attribute %s is not supported (upkit understands token, serial, slot-id, object, id, type, module-path, pin-source)", ErrPKCS11URI, name)
		}
	}
	return nil
}

// check requires exactly one token selector and a key, none of them empty.
func (p *uriParser) check(s string) error {
	u, seen := p.u, p.seen
	var sel []string
	for _, n := range []string{"token", "serial", "slot-id"} {
		if seen[n] {
			sel = append(sel, n)
		}
	}
	switch {
	case len(sel) == 0:
		return fmt.Errorf("%w: no token: add token=LABEL (or serial= or slot-id=) to %q", ErrPKCS11URI, s)
	case len(sel) > 1:
		return fmt.Errorf("%w: token selected by both %s: use one", ErrPKCS11URI, strings.Join(sel, " and "))
	case seen["token"] && u.Token == "":
		return fmt.Errorf("%w: empty token label", ErrPKCS11URI)
	case seen["serial"] && u.Serial == "":
		return fmt.Errorf("%w: empty serial", ErrPKCS11URI)
	case seen["object"] && u.Object == "":
		return fmt.Errorf("%w: empty object label", ErrPKCS11URI)
	case u.Object == "" && u.ID == nil:
		return fmt.Errorf("%w: no key: add object=KEYLABEL (or id=) to %q", ErrPKCS11URI, s)
	}
	return nil
}

// String returns the URI in canonical form: path attributes in a fixed
// order, values percent-encoded where needed. It never contains a PIN.
func (u *PKCS11URI) String() string {
	var path []string
	add := func(name, val string) { path = append(path, name+"="+pkcs11Escape(val)) }
	switch {
	case u.Token != "":
		add("token", u.Token)
	case u.Serial != "":
		add("serial", u.Serial)
	case u.SlotID != nil:
		add("slot-id", strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	if u.Object != "" {
		add("object", u.Object)
	}
	if u.ID != nil {
		add("id", string(u.ID))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+pkcs11Escape(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source="+pkcs11Escape(u.PINSource))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// describe names the key and token for error messages.
func (u *PKCS11URI) describe() string {
	return "key " + u.keyDesc() + " in " + u.tokenDesc()
}

func (u *PKCS11URI) keyDesc() string {
	switch {
	case u.Object != "" && u.ID != nil:
		return fmt.Sprintf("labelled %q with id %x", u.Object, u.ID)
	case u.Object != "":
		return fmt.Sprintf("labelled %q", u.Object)
	default:
		return fmt.Sprintf("with id %x", u.ID)
	}
}

func (u *PKCS11URI) tokenDesc() string {
	switch {
	case u.Token != "":
		return fmt.Sprintf("token %q", u.Token)
	case u.Serial != "":
		return fmt.Sprintf("token with serial %q", u.Serial)
	default:
		return fmt.Sprintf("token in slot %d", *u.SlotID)
	}
}

// pkcs11Escape percent-encodes everything but RFC 7512's unreserved
// characters and the few path characters that are safe in a value.
func pkcs11Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '[', c == ']',
			c == '@', c == '!', c == '$', c == '\'', c == '(', c == ')', c == '*',
			c == '+', c == ',', c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// PKCS11Options are the defaults for what a pkcs11: URI leaves out.
type PKCS11Options struct {
	// ModulePath is the PKCS#11 module used when the URI has no module-path.
	ModulePath string
	// PIN is the user PIN used when the URI has no pin-source. An empty PIN
	// means none was given and is an error (ErrPKCS11PIN).
	PIN string
}

// PKCS11OptionsFromEnv reads the defaults from UPKIT_PKCS11_MODULE and
// UPKIT_PKCS11_PIN. Load uses them for pkcs11: references.
func PKCS11OptionsFromEnv() PKCS11Options {
	return PKCS11Options{ModulePath: os.Getenv(PKCS11ModuleEnv), PIN: os.Getenv(PKCS11PINEnv)}
}

// modulePath picks the module: the URI's module-path, else opts.
func (u *PKCS11URI) modulePath(opts PKCS11Options) (string, error) {
	p := u.ModulePath
	if p == "" {
		p = opts.ModulePath
	}
	if p == "" {
		return "", fmt.Errorf("%w: no module for %s: set %s to the module's shared library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so) or add ?module-path=... to the key URI", ErrPKCS11Module, u.describe(), PKCS11ModuleEnv)
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s (from %s): %v", ErrPKCS11Module, p, u.moduleOrigin(), err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s (from %s) is not a file", ErrPKCS11Module, p, u.moduleOrigin())
	}
	return p, nil
}

func (u *PKCS11URI) moduleOrigin() string {
	if u.ModulePath != "" {
		return "module-path in the key URI"
	}
	return PKCS11ModuleEnv
}

// pin picks the PIN: the file named by pin-source, else opts.PIN.
func (u *PKCS11URI) pin(opts PKCS11Options) (string, error) {
	if u.PINSource == "" {
		if opts.PIN == "" {
			return "", fmt.Errorf("%w: no PIN for %s: set %s or add ?pin-source=file:/path/to/pin to the key URI (PINs are never taken from flags)", ErrPKCS11PIN, u.tokenDesc(), PKCS11PINEnv)
		}
		return opts.PIN, nil
	}
	path := u.PINSource
	if rest, ok := strings.CutPrefix(path, "file:"); ok {
		path = rest
		if p, ok := strings.CutPrefix(rest, "//"); ok {
			// file://HOST/path: only an empty host or localhost is local.
			host, tail, _ := strings.Cut(p, "/")
			if host != "" && host != "localhost" {
				return "", fmt.Errorf("%w: pin-source %q: only local files are supported", ErrPKCS11PIN, u.PINSource)
			}
			path = "/" + tail
		}
	} else if strings.Contains(path, "://") {
		return "", fmt.Errorf("%w: pin-source %q: only file: sources are supported", ErrPKCS11PIN, u.PINSource)
	}
	f, err := spec.OpenRegular(path)
	if err != nil {
		return "", fmt.Errorf("%w: reading pin-source: %v", ErrPKCS11PIN, err)
	}
	defer f.Close()
	buf := make([]byte, MaxPINFileSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("%w: reading pin-source %s: %v", ErrPKCS11PIN, path, err)
	}
	if n > MaxPINFileSize {
		return "", fmt.Errorf("%w: pin-source %s is larger than %d bytes", ErrPKCS11PIN, path, MaxPINFileSize)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(buf[:n]), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("%w: pin-source %s is empty", ErrPKCS11PIN, path)
	}
	return pin, nil
}
