package signing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePKCS11URI(t *testing.T) {
	slot := uint(7)
	for _, tc := range []struct {
		in   string
		want PKCS11URI
	}{
		{"pkcs11:token=upkit;object=release", PKCS11URI{Token: "upkit", Object: "release"}},
		{"pkcs11:object=release;token=upkit;type=private", PKCS11URI{Token: "upkit", Object: "release"}},
		{"pkcs11:token=My%20Token;object=release%3Bkey;id=%01%ff",
			PKCS11URI{Token: "My Token", Object: "release;key", ID: []byte{1, 0xff}}},
		{"pkcs11:slot-id=7;id=%A0", PKCS11URI{SlotID: &slot, ID: []byte{0xa0}}},
		{"pkcs11:serial=9eae8ff60fffbe20;object=k", PKCS11URI{Serial: "9eae8ff60fffbe20", Object: "k"}},
		{"pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin",
			PKCS11URI{Token: "t", Object: "k", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/run/secrets/pin"}},
		{"pkcs11:token=t;object=k;x-vendor=1?x-other=2", PKCS11URI{Token: "t", Object: "k"}},
		{"pkcs11:token=a+b;object=k", PKCS11URI{Token: "a+b", Object: "k"}}, // '+' is not a space
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParsePKCS11URI(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !equalURI(u, &tc.want) {
				t.Fatalf("got %+v, want %+v", *u, tc.want)
			}
			// String gives a URI that parses back to the same thing.
			again, err := ParsePKCS11URI(u.String())
			if err != nil || !equalURI(again, u) {
				t.Fatalf("round trip through %q: %+v, %v", u.String(), again, err)
			}
		})
	}
}

func equalURI(a, b *PKCS11URI) bool {
	slot := func(p *uint) int64 {
		if p == nil {
			return -1
		}
		return int64(*p)
	}
	return a.Token == b.Token && a.Serial == b.Serial && slot(a.SlotID) == slot(b.SlotID) &&
		a.Object == b.Object && bytes.Equal(a.ID, b.ID) && (a.ID == nil) == (b.ID == nil) &&
		a.ModulePath == b.ModulePath && a.PINSource == b.PINSource
}

func TestParsePKCS11URIErrors(t *testing.T) {
	for _, tc := range []struct {
		in, mention string
	}{
		{"pkcs11:token=t;object=k?pin-value=1234", "shell history"},
		{"pkcs11:token=t;object=k;pin-value=1234", "pin-source"},
		{"pkcs11:token=t", "object="},
		{"pkcs11:object=k", "token="},
		{"pkcs11:token=t;serial=s;object=k", "token and serial"},
		{"pkcs11:token=t;object=k;object=j", "object given twice"},
		{"pkcs11:token=t;object=k;module-path=/lib.so", "after '?'"},
		{"pkcs11:token=t?object=k", "before '?'"},
		{"pkcs11:token=t;object=k;type=public", "type=public"},
		{"pkcs11:token=t;object=k;manufacturer=x", "manufacturer"},
		{"pkcs11:token=t;object=k?module-name=softhsm2", "module-path"},
		{"pkcs11:token=t;object=%zz", "percent"},
		{"pkcs11:token=t;object", "name=value"},
		{"pkcs11:slot-id=x;object=k", "slot-id"},
		{"pkcs11:token=;object=k", "empty token"},
		{"pkcs11:token=t;object=", "empty object"},
		{"pkcs11:token=t;id=", "empty id"},
		{"pkcs11:token=t;object=k#frag", "fragment"},
		{"token=t;object=k", "pkcs11:"},
		{"pkcs11:token=t;object=" + strings.Repeat("k", MaxPKCS11URILen), "limit"},
	} {
		t.Run(tc.in[:min(len(tc.in), 60)], func(t *testing.T) {
			_, err := ParsePKCS11URI(tc.in)
			if !errors.Is(err, ErrPKCS11URI) {
				t.Fatalf("got %v, want ErrPKCS11URI", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not mention %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Fatalf("error %q repeats the PIN", err)
			}
		})
	}
}

func TestPKCS11PINSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pin := write("pin", "s3cret\r\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("9", MaxPINFileSize+1))
	for _, tc := range []struct {
		source, env, want string
		err               error
	}{
		{"", "from-env", "from-env", nil},
		{"", "", "", ErrPKCS11PIN},
		{"file:" + pin, "from-env", "s3cret", nil},
		{"file://" + pin, "", "s3cret", nil},
		{"file://localhost" + pin, "", "s3cret", nil},
		{pin, "", "s3cret", nil},
		{"file://elsewhere" + pin, "", "", ErrPKCS11PIN},
		{"https://vault/pin", "", "", ErrPKCS11PIN},
		{"file:" + filepath.Join(dir, "missing"), "", "", ErrPKCS11PIN},
		{"file:" + empty, "", "", ErrPKCS11PIN},
		{"file:" + big, "", "", ErrPKCS11PIN},
	} {
		u := &PKCS11URI{Token: "t", Object: "k", PINSource: tc.source}
		got, err := u.pin(PKCS11Options{PIN: tc.env})
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("pin-source %q, env %q: got %q, %v; want %q, %v", tc.source, tc.env, got, err, tc.want, tc.err)
		}
	}
}

func TestIsPKCS11Ref(t *testing.T) {
	for ref, want := range map[string]bool{
		"pkcs11:token=t;object=k": true,
		"release.key":             false,
		"hashivault://release":    false,
		"./pkcs11:x":              false,
	} {
		if got := IsPKCS11Ref(ref); got != want {
			t.Errorf("IsPKCS11Ref(%q) = %v", ref, got)
		}
		if want && IsKMSRef(ref) {
			t.Errorf("IsKMSRef(%q) = true: Load would send a token URI to the KMS registry", ref)
		}
	}
}

// FuzzParsePKCS11URI: parsing never panics, errors are ErrPKCS11URI, and a
// parsed URI whose canonical form fits MaxPKCS11URILen survives a round trip
// through String (a longer one is refused for its length).
func FuzzParsePKCS11URI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=upkit;object=release",
		"pkcs11:token=My%20Token;object=k;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/pin",
		"pkcs11:slot-id=42;id=%00",
		"pkcs11:serial=abc;object=k;x-a=b?x-c=d",
		"pkcs11:token=t;object=k?pin-value=1",
		"pkcs11:",
		"pkcs11:;;?&&",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParsePKCS11URI(s)
		if err != nil {
			if !errors.Is(err, ErrPKCS11URI) {
				t.Fatalf("error %v is not ErrPKCS11URI", err)
			}
			return
		}
		canon := u.String()
		if len(canon) > MaxPKCS11URILen {
			// Raw bytes that String percent-encodes triple in length, so a
			// URI within the limit can have a canonical form beyond it. The
			// limit bounds what a user hands upkit; it must then be the
			// length that is refused, with the limit named.
			_, err := ParsePKCS11URI(canon)
			if err == nil || !errors.Is(err, ErrPKCS11URI) || !strings.Contains(err.Error(), "limit") {
				t.Fatalf("canonical form of %d bytes: got %v, want the length limit error", len(canon), err)
			}
			return
		}
		again, err := ParsePKCS11URI(canon)
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", s, u.String(), err)
		}
		if !equalURI(u, again) {
			t.Fatalf("round trip of %q through %q: %+v != %+v", s, u.String(), *u, *again)
		}
	})
}
