package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Each TestAttack* starts from the good fixture (goodRoot, goodRelease),
// breaks one thing, re-signs where the attack needs valid signatures, and
// asserts the exact sentinel error.

func TestFixtureIsGood(t *testing.T) {
	root, err := VerifySelfSignedRoot(signedRoot(t, goodRoot(), signers(1, 2)...), tNow)
	if err != nil {
		t.Fatalf("VerifySelfSignedRoot: %v", err)
	}
	rel, err := VerifyRelease(root, signedRelease(t, goodRelease(), signers(4, 5)...), tNow)
	if err != nil {
		t.Fatalf("VerifyRelease: %v", err)
	}
	if rel.Product != "acme-gateway" || rel.Version != 7 || len(rel.Images) != 2 {
		t.Fatalf("unexpected release %+v", rel)
	}
}

func TestAttackBelowThreshold(t *testing.T) {
	root := goodRoot() // release threshold 2
	_, err := VerifyRelease(root, signedRelease(t, goodRelease(), key(4)), tNow)
	wantErr(t, err, ErrThreshold)
	wantNotErr(t, err, ErrUnknownKey)

	t.Run("unsigned", func(t *testing.T) {
		_, err := VerifyRelease(root, signedRelease(t, goodRelease()), tNow)
		wantErr(t, err, ErrThreshold)
	})
	t.Run("root", func(t *testing.T) { // root threshold 2, one signature
		_, err := VerifySelfSignedRoot(signedRoot(t, goodRoot(), key(1)), tNow)
		wantErr(t, err, ErrThreshold)
	})
	t.Run("one valid plus one bad", func(t *testing.T) {
		env, _ := NewReleaseEnvelope(goodRelease())
		signEnvelope(t, env, key(4), key(5))
		env.Signatures[1].Sig[0] ^= 1
		b, _ := env.Marshal()
		_, err := VerifyRelease(root, b, tNow)
		wantErr(t, err, ErrThreshold)
		wantNotErr(t, err, ErrBadSignature) // one did verify
	})
}

func TestAttackSameKeyTwice(t *testing.T) {
	env, err := NewReleaseEnvelope(goodRelease())
	if err != nil {
		t.Fatal(err)
	}
	signEnvelope(t, env, key(4))
	// The same key's signature again, and a second, different signature by
	// the same key (ECDSA signatures differ each time; for Ed25519 we
	// re-add the same bytes): a key counts once.
	env.Signatures = append(env.Signatures, env.Signatures[0])
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), key(4).KeyID()); n != 2 {
		t.Fatalf("envelope names key 4 %d times, want 2", n)
	}
	_, err = VerifyRelease(goodRoot(), b, tNow)
	wantErr(t, err, ErrThreshold)

	t.Run("ecdsa distinct signatures", func(t *testing.T) {
		ec := testECDSA()
		root := makeRoot(1, []int{1, 2, 3}, 2, []int{4}, 1)
		id, k := KeyOf(ec.Public())
		root.Keys[id] = k
		root.Roles.Release.KeyIDs = append(root.Roles.Release.KeyIDs, id)
		root.Roles.Release.Threshold = 2
		env, _ := NewReleaseEnvelope(goodRelease())
		signEnvelope(t, env, ec)
		first := env.Signatures[0]
		signEnvelope(t, env, ec) // replaces
		if len(env.Signatures) != 1 {
			t.Fatalf("Sign by the same key should replace, have %d signatures", len(env.Signatures))
		}
		env.Signatures = append(env.Signatures, first)
		if bytes.Equal(first.Sig, env.Signatures[0].Sig) {
			t.Fatal("expected two different ECDSA signatures")
		}
		b, _ := env.Marshal()
		_, err := VerifyRelease(root, b, tNow)
		wantErr(t, err, ErrThreshold)
	})
}

// rotateRelease returns root 2: release keys 4 and 5 revoked, key 6 alone.
func rotatedRoot() *Root { return makeRoot(2, []int{1, 2, 3}, 2, []int{6}, 1) }

func TestAttackRevokedKeyAfterRotation(t *testing.T) {
	root1 := goodRoot()
	root2, err := VerifyRoot(root1, signedRoot(t, rotatedRoot(), signers(1, 2)...), tNow)
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	old := signedRelease(t, goodRelease(), signers(4, 5)...)
	if _, err := VerifyRelease(root1, old, tNow); err != nil {
		t.Fatalf("release under root 1: %v", err)
	}
	_, err = VerifyRelease(root2, old, tNow)
	wantErr(t, err, ErrUnknownKey, ErrThreshold)
	// The new key works.
	if _, err := VerifyRelease(root2, signedRelease(t, goodRelease(), key(6)), tNow); err != nil {
		t.Fatalf("release by the new key: %v", err)
	}

	t.Run("revoked root key", func(t *testing.T) {
		// Root 2 replaces root key 3 by key 7; root 3 signed by 3 (revoked)
		// and 1 has only one valid signature from root 2's root role.
		r2 := makeRoot(2, []int{1, 2, 7}, 2, []int{4, 5}, 2)
		root2, err := VerifyRoot(root1, signedRoot(t, r2, signers(1, 2, 7)...), tNow)
		if err != nil {
			t.Fatalf("rotation: %v", err)
		}
		r3 := makeRoot(3, []int{1, 2, 3}, 2, []int{4, 5}, 2)
		_, err = VerifyRoot(root2, signedRoot(t, r3, signers(1, 3)...), tNow)
		wantErr(t, err, ErrThreshold)
	})
}

func TestAttackRootSkipVersion(t *testing.T) {
	root1 := goodRoot()
	root3 := makeRoot(3, []int{1, 2, 3}, 2, []int{6}, 1) // same root keys as root 1
	b3 := signedRoot(t, root3, signers(1, 2)...)
	_, err := VerifyRoot(root1, b3, tNow)
	wantErr(t, err, ErrRootVersion)
	_, err = VerifyRootChain(root1, [][]byte{b3}, tNow)
	wantErr(t, err, ErrRootVersion)
	// In order it works.
	b2 := signedRoot(t, rotatedRoot(), signers(1, 2)...)
	got, err := VerifyRootChain(root1, [][]byte{b2, b3}, tNow)
	if err != nil || got.Version != 3 {
		t.Fatalf("chain 1->2->3: %v, %+v", err, got)
	}
	// Out of order it does not.
	_, err = VerifyRootChain(root1, [][]byte{b3, b2}, tNow)
	wantErr(t, err, ErrRootVersion)
}

func TestAttackRootRollback(t *testing.T) {
	b1 := signedRoot(t, goodRoot(), signers(1, 2)...)
	b2 := signedRoot(t, rotatedRoot(), signers(1, 2)...)
	root1, err := VerifySelfSignedRoot(b1, tNow)
	if err != nil {
		t.Fatal(err)
	}
	root2, err := VerifyRoot(root1, b2, tNow)
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyRoot(root2, b1, tNow) // older
	wantErr(t, err, ErrRootVersion)
	_, err = VerifyRoot(root2, b2, tNow) // same version replayed
	wantErr(t, err, ErrRootVersion)
}

func TestAttackExpiredRelease(t *testing.T) {
	rel := goodRelease()
	rel.Expires = tNow.Add(-time.Second)
	_, err := VerifyRelease(goodRoot(), signedRelease(t, rel, signers(4, 5)...), tNow)
	wantErr(t, err, ErrExpired)
	// The exact expiry instant is still valid; one second later is not.
	rel.Expires = tNow
	b := signedRelease(t, rel, signers(4, 5)...)
	if _, err := VerifyRelease(goodRoot(), b, tNow); err != nil {
		t.Fatalf("at expiry: %v", err)
	}
	_, err = VerifyRelease(goodRoot(), b, tNow.Add(time.Second))
	wantErr(t, err, ErrExpired)
}

func TestAttackExpiredRoot(t *testing.T) {
	past := tNow.Add(-time.Hour)
	t.Run("trusted root used for a release", func(t *testing.T) {
		root := goodRoot()
		root.Expires = past
		_, err := VerifyRelease(root, signedRelease(t, goodRelease(), signers(4, 5)...), tNow)
		wantErr(t, err, ErrExpired)
	})
	t.Run("self-signed", func(t *testing.T) {
		r := goodRoot()
		r.Expires = past
		_, err := VerifySelfSignedRoot(signedRoot(t, r, signers(1, 2)...), tNow)
		wantErr(t, err, ErrExpired)
	})
	t.Run("rotation step", func(t *testing.T) {
		r2 := rotatedRoot()
		r2.Expires = past
		_, err := VerifyRoot(goodRoot(), signedRoot(t, r2, signers(1, 2)...), tNow)
		wantErr(t, err, ErrExpired)
	})
	t.Run("final root of a chain", func(t *testing.T) {
		r2 := rotatedRoot()
		r2.Expires = past
		_, err := VerifyRootChain(goodRoot(), [][]byte{signedRoot(t, r2, signers(1, 2)...)}, tNow)
		wantErr(t, err, ErrExpired)
		old := goodRoot()
		old.Expires = past
		_, err = VerifyRootChain(old, nil, tNow)
		wantErr(t, err, ErrExpired)
	})
	t.Run("expired intermediate root is fine", func(t *testing.T) {
		old := goodRoot()
		old.Expires = past
		r2 := rotatedRoot()
		r2.Expires = past
		r3 := makeRoot(3, []int{1, 2, 3}, 2, []int{6}, 1)
		got, err := VerifyRootChain(old, [][]byte{signedRoot(t, r2, signers(1, 2)...), signedRoot(t, r3, signers(1, 2)...)}, tNow)
		if err != nil || got.Version != 3 {
			t.Fatalf("chain through expired roots: %v", err)
		}
	})
}

func TestAttackTamperedPayload(t *testing.T) {
	good := signedRelease(t, goodRelease(), signers(4, 5)...)
	env, err := ParseEnvelope(good)
	if err != nil {
		t.Fatal(err)
	}
	// Raise the security version of rootfs, keep the original signatures.
	env.Payload = bytes.Replace(env.Payload, []byte(`"securityVersion":3`), []byte(`"securityVersion":4`), 1)
	if bytes.Equal(env.Payload, payloadOf(t, good)) {
		t.Fatal("tamper did not change the payload")
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyRelease(goodRoot(), b, tNow)
	wantErr(t, err, ErrBadSignature, ErrThreshold)

	t.Run("root", func(t *testing.T) {
		env, _ := ParseEnvelope(signedRoot(t, goodRoot(), signers(1, 2)...))
		env.Payload = bytes.Replace(env.Payload, []byte(`"threshold":2`), []byte(`"threshold":1`), 1)
		b, _ := env.Marshal()
		_, err := VerifySelfSignedRoot(b, tNow)
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("corrupt signature", func(t *testing.T) {
		env, _ := ParseEnvelope(good)
		for i := range env.Signatures {
			env.Signatures[i].Sig[5] ^= 0x40
		}
		b, _ := env.Marshal()
		_, err := VerifyRelease(goodRoot(), b, tNow)
		wantErr(t, err, ErrBadSignature)
	})
}

func TestAttackMixAndMatch(t *testing.T) {
	rel, err := VerifyRelease(goodRoot(), signedRelease(t, goodRelease(), signers(4, 5)...), tNow)
	if err != nil {
		t.Fatal(err)
	}
	// A package from another (older, validly signed) release.
	other := goodRelease()
	other.Version = 6
	other.Images[0].Package.Digest = digestOf("rootfs-2.4.0.upk")
	_, err = rel.FindPackage(other.Images[0].Package.Digest)
	wantErr(t, err, ErrNotListed)
	_, _, err = rel.FindDelta(digestOf("some other delta"))
	wantErr(t, err, ErrNotListed)
	// The listed ones are found.
	img, err := rel.FindPackage(digestOf("rootfs.upk"))
	if err != nil || img.Component != "rootfs" {
		t.Fatalf("FindPackage: %v", err)
	}
	img, d, err := rel.FindDelta(digestOf("rootfs-2.4.0-2.4.1.delta"))
	if err != nil || img.Component != "rootfs" || d.Size != 812345 {
		t.Fatalf("FindDelta: %v", err)
	}
}

func TestAttackWrongPayloadType(t *testing.T) {
	root := goodRoot()
	t.Run("root envelope as release", func(t *testing.T) {
		// Signed by the release keys, so only the type is wrong.
		_, err := VerifyRelease(root, signedRoot(t, goodRoot(), signers(4, 5)...), tNow)
		wantErr(t, err, ErrPayloadType)
	})
	t.Run("release payload relabelled and re-signed", func(t *testing.T) {
		env, _ := NewReleaseEnvelope(goodRelease())
		env.PayloadType = RootPayloadType
		b := signEnvelope(t, env, signers(1, 2, 4, 5)...)
		_, err := VerifyRelease(root, b, tNow)
		wantErr(t, err, ErrPayloadType)
	})
	t.Run("release envelope as root", func(t *testing.T) {
		b := signedRelease(t, goodRelease(), signers(1, 2)...)
		_, err := VerifyRoot(root, b, tNow)
		wantErr(t, err, ErrPayloadType)
		_, err = VerifySelfSignedRoot(b, tNow)
		wantErr(t, err, ErrPayloadType)
	})
	t.Run("type changed without re-signing", func(t *testing.T) {
		// PAE covers the type: relabel a root-typed signed payload as a
		// release and the signatures no longer verify.
		env, _ := NewReleaseEnvelope(goodRelease())
		env.PayloadType = "application/vnd.upkit.other+json"
		signEnvelope(t, env, signers(4, 5)...)
		env.PayloadType = ReleasePayloadType
		b, _ := env.Marshal()
		_, err := VerifyRelease(root, b, tNow)
		wantErr(t, err, ErrBadSignature)
	})
}

func TestAttackOversizedDocument(t *testing.T) {
	good := signedRelease(t, goodRelease(), signers(4, 5)...)
	t.Run("envelope", func(t *testing.T) {
		big := append(bytes.Repeat([]byte(" "), MaxDocumentSize), good...)
		_, err := VerifyRelease(goodRoot(), big, tNow)
		wantErr(t, err, ErrTooLarge)
		_, err = ParseEnvelope(big)
		wantErr(t, err, ErrTooLarge)
	})
	t.Run("payload", func(t *testing.T) {
		p := payloadOf(t, good)
		big := append(p[:len(p)-1:len(p)-1], []byte(strings.Repeat(" ", MaxDocumentSize)+"}")...)
		_, err := ParseRelease(big)
		wantErr(t, err, ErrTooLarge)
	})
	t.Run("too many images", func(t *testing.T) {
		rel := goodRelease()
		for i := len(rel.Images); i <= MaxImages; i++ {
			img := rel.Images[1]
			img.Component = fmt.Sprintf("c%d", i)
			img.Package.Digest = digestOf(img.Component)
			rel.Images = append(rel.Images, img)
		}
		_, err := NewReleaseEnvelope(rel)
		wantErr(t, err, ErrTooLarge)
		p, _ := json.Marshal(releaseWire{SchemaVersion: 1, Product: rel.Product, Version: rel.Version,
			Created: formatTime(rel.Created), Expires: formatTime(rel.Expires), Images: rel.Images})
		_, err = VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, p, signers(4, 5)...), tNow)
		wantErr(t, err, ErrTooLarge)
	})
	t.Run("too many signatures", func(t *testing.T) {
		env, _ := ParseEnvelope(good)
		for len(env.Signatures) <= MaxSignatures {
			env.Signatures = append(env.Signatures, Signature{KeyID: fmt.Sprintf("k%d", len(env.Signatures)), Sig: []byte{1}})
		}
		_, err := env.Marshal()
		wantErr(t, err, ErrTooLarge)
		var sigs []string
		for _, s := range env.Signatures {
			sigs = append(sigs, fmt.Sprintf(`{"keyid":%q,"sig":"AQ=="}`, s.KeyID))
		}
		raw := fmt.Sprintf(`{"payloadType":%q,"payload":"e30=","signatures":[%s]}`, ReleasePayloadType, strings.Join(sigs, ","))
		_, err = ParseEnvelope([]byte(raw))
		wantErr(t, err, ErrTooLarge)
	})
	t.Run("deep nesting", func(t *testing.T) {
		raw := `{"payloadType":` + strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1) + `}`
		_, err := ParseEnvelope([]byte(raw))
		wantErr(t, err, ErrTooLarge)
	})
	t.Run("root chain", func(t *testing.T) {
		chain := make([][]byte, MaxRootChain+1)
		_, err := VerifyRootChain(goodRoot(), chain, tNow)
		wantErr(t, err, ErrTooLarge)
	})
}

func TestAttackDuplicateJSONKeys(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	cases := map[string]struct {
		from, to string
	}{
		// {"version":1,"version":9}: encoding/json would silently keep 9.
		"top level":  {`"version":7,`, `"version":1,"version":9,`},
		"in image":   {`"securityVersion":3,`, `"securityVersion":3,"securityVersion":99,`},
		"in delta":   {`"size":812345`, `"size":812345,"size":1`},
		"other case": {`"version":7,`, `"version":1,"Version":9,`},
		"escaped":    {`"version":7,`, `"version":1,"\u0076ersion":9,`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			bad := bytes.Replace(p, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(bad, p) {
				t.Fatalf("replacement %q not applied", c.from)
			}
			_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, bad, signers(4, 5)...), tNow)
			wantErr(t, err, ErrDuplicateKey, ErrMalformed)
		})
	}
	t.Run("root", func(t *testing.T) {
		rp := payloadOf(t, signedRoot(t, goodRoot(), signers(1, 2)...))
		bad := bytes.Replace(rp, []byte(`"version":1,`), []byte(`"version":1,"version":2,`), 1)
		_, err := VerifySelfSignedRoot(signedRawPayload(t, RootPayloadType, bad, signers(1, 2)...), tNow)
		wantErr(t, err, ErrDuplicateKey)
	})
	t.Run("envelope", func(t *testing.T) {
		good := signedRelease(t, goodRelease(), signers(4, 5)...)
		bad := bytes.Replace(good, []byte(`"payloadType"`), []byte(`"payloadType": "x", "payloadType"`), 1)
		_, err := ParseEnvelope(bad)
		wantErr(t, err, ErrDuplicateKey)
	})
	t.Run("only different case", func(t *testing.T) {
		bad := bytes.Replace(p, []byte(`"product"`), []byte(`"Product"`), 1)
		_, err := ParseRelease(bad)
		wantErr(t, err, ErrMalformed)
	})
}

func TestAttackUnknownKeyOnly(t *testing.T) {
	// A release signed only by strangers, and one by root keys (not release
	// keys): ignored signatures, nothing valid remains.
	_, err := VerifyRelease(goodRoot(), signedRelease(t, goodRelease(), signers(8, 9)...), tNow)
	wantErr(t, err, ErrUnknownKey, ErrThreshold)
	_, err = VerifyRelease(goodRoot(), signedRelease(t, goodRelease(), signers(1, 2)...), tNow)
	wantErr(t, err, ErrUnknownKey)
	// Strangers next to a threshold of valid keys are ignored.
	if _, err := VerifyRelease(goodRoot(), signedRelease(t, goodRelease(), signers(8, 4, 9, 5)...), tNow); err != nil {
		t.Fatalf("extra unknown signatures should be ignored: %v", err)
	}
}

func TestAttackRootSignedOnlyByNewKeys(t *testing.T) {
	// Root 2 names entirely new root keys 7, 8, 9 and is signed only by them:
	// a takeover attempt without root 1's keys.
	r2 := makeRoot(2, []int{7, 8, 9}, 2, []int{4, 5}, 2)
	_, err := VerifyRoot(goodRoot(), signedRoot(t, r2, signers(7, 8, 9)...), tNow)
	wantErr(t, err, ErrUnknownKey, ErrThreshold)
	// With root 1's threshold too, the rotation is accepted.
	if _, err := VerifyRoot(goodRoot(), signedRoot(t, r2, signers(1, 2, 7, 8)...), tNow); err != nil {
		t.Fatalf("proper rotation: %v", err)
	}
}

func TestAttackRootSignedOnlyByOldKeys(t *testing.T) {
	// Root 2 names new root keys but only root 1's keys signed it: the new
	// keys never agreed, so it is refused (a threshold of its own keys too).
	r2 := makeRoot(2, []int{7, 8, 9}, 2, []int{4, 5}, 2)
	_, err := VerifyRoot(goodRoot(), signedRoot(t, r2, signers(1, 2)...), tNow)
	wantErr(t, err, ErrUnknownKey, ErrThreshold)
	_, err = VerifyRoot(goodRoot(), signedRoot(t, r2, signers(1, 2, 7)...), tNow)
	wantErr(t, err, ErrThreshold)
}

func TestAttackKeyIDMismatch(t *testing.T) {
	r := goodRoot()
	id1, id9 := key(1).KeyID(), key(9).KeyID()
	// Key 9's PEM listed under key 1's ID: a signature by 9 must not count as 1.
	r.Keys[id1] = Key{Algorithm: "ed25519", Public: string(key(9).PEM())}
	_, err := NewRootEnvelope(r)
	wantErr(t, err, ErrMalformed)
	w := rootWire{SchemaVersion: 1, Version: 1, Expires: formatTime(r.Expires), Keys: r.Keys, Roles: r.Roles}
	p, _ := json.Marshal(w)
	_, err = VerifySelfSignedRoot(signedRawPayload(t, RootPayloadType, p, signers(9, 2)...), tNow)
	wantErr(t, err, ErrMalformed)
	_ = id9

	t.Run("wrong algorithm", func(t *testing.T) {
		r := goodRoot()
		k := r.Keys[id1]
		k.Algorithm = "ecdsa-p256"
		r.Keys[id1] = k
		_, err := NewRootEnvelope(r)
		wantErr(t, err, ErrMalformed)
	})
}

func TestAttackUnknownSchemaVersion(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	bad := bytes.Replace(p, []byte(`"schemaVersion":1`), []byte(`"schemaVersion":2`), 1)
	bad = bytes.Replace(bad, []byte(`"product"`), []byte(`"futureField":true,"product"`), 1)
	_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, bad, signers(4, 5)...), tNow)
	wantErr(t, err, ErrSchemaVersion)
}

func TestAttackUnknownField(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	for name, c := range map[string][2]string{
		"top level": {`"product"`, `"channel":"beta","product"`},
		"in image":  {`"component":"rootfs"`, `"component":"rootfs","bootArgs":"init=/bin/sh"`},
	} {
		t.Run(name, func(t *testing.T) {
			bad := bytes.Replace(p, []byte(c[0]), []byte(c[1]), 1)
			_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, bad, signers(4, 5)...), tNow)
			wantErr(t, err, ErrMalformed)
		})
	}
}

func TestAttackTrailingData(t *testing.T) {
	good := signedRelease(t, goodRelease(), signers(4, 5)...)
	for _, tail := range []string{"{}", "x", `{"payloadType":"a"}`, "\x00"} {
		_, err := ParseEnvelope(append(bytes.Clone(good), tail...))
		wantErr(t, err, ErrMalformed)
	}
	p := payloadOf(t, good)
	_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, append(bytes.Clone(p), "[]"...), signers(4, 5)...), tNow)
	wantErr(t, err, ErrMalformed)
}

func TestAttackNullValue(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	bad := bytes.Replace(p, []byte(`"hardware":["acme-gw100"]`), []byte(`"hardware":null`), 1)
	_, err := ParseRelease(bad)
	wantErr(t, err, ErrMalformed)
}

func TestAttackDuplicateComponent(t *testing.T) {
	rel := goodRelease()
	rel.Images[1].Component = "rootfs"
	_, err := NewReleaseEnvelope(rel)
	wantErr(t, err, ErrMalformed)
	p, _ := json.Marshal(releaseWire{SchemaVersion: 1, Product: rel.Product, Version: rel.Version,
		Created: formatTime(rel.Created), Expires: formatTime(rel.Expires), Images: rel.Images})
	_, err = VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, p, signers(4, 5)...), tNow)
	wantErr(t, err, ErrMalformed)
}

func TestAttackWrongHardware(t *testing.T) {
	rel, err := VerifyRelease(goodRoot(), signedRelease(t, goodRelease(), signers(4, 5)...), tNow)
	if err != nil {
		t.Fatal(err)
	}
	app, ok := rel.Image("app")
	if !ok {
		t.Fatal("no app image")
	}
	wantErr(t, app.CheckHardware("acme-gw200"), ErrHardware)
	if app.Supports("ACME-GW100") {
		t.Fatal("hardware match must be exact")
	}
	if err := app.CheckHardware("acme-gw100"); err != nil {
		t.Fatal(err)
	}
}

func TestAttackCanceledSigner(t *testing.T) {
	env, _ := NewReleaseEnvelope(goodRelease())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sign(ctx, env, key(4)); err == nil {
		t.Fatal("Sign with a canceled context should fail")
	}
	if len(env.Signatures) != 0 {
		t.Fatal("failed Sign must not add a signature")
	}
}

// A signed release that omits a required member must not read as if the
// member were 0 (a missing securityVersion would otherwise lower nothing
// visibly but disarm the anti-rollback counter of that image).
func TestAttackMissingMember(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	for _, member := range []string{`"securityVersion":`, `"size":`, `"version":`} {
		i := bytes.Index(p, []byte(member))
		if i < 0 {
			t.Fatalf("fixture has no %s", member)
		}
		end := i + bytes.IndexAny(p[i:], ",}")
		bad := append(append([]byte{}, p[:i]...), p[end+1:]...)
		if p[end] == '}' { // last member: drop the comma before it instead
			bad = append(append([]byte{}, p[:i-1]...), p[end:]...)
		}
		_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, bad, signers(4, 5)...), tNow)
		wantErr(t, err, ErrMalformed)
		if err != nil && !strings.Contains(err.Error(), "missing member") {
			t.Errorf("removing %s: error %q does not say a member is missing", member, err)
		}
	}
}

// "-0" decodes as 0 into a signed integer field; no number in the documents
// may be negative, so it is refused like any negative number.
func TestAttackNegativeNumber(t *testing.T) {
	p := payloadOf(t, signedRelease(t, goodRelease(), signers(4, 5)...))
	sizeRE := regexp.MustCompile(`"size":[0-9]+`)
	for _, num := range []string{"-0", "-1"} {
		bad := sizeRE.ReplaceAll(p, []byte(`"size":`+num))
		if bytes.Equal(bad, p) {
			t.Fatal("fixture has no size member")
		}
		_, err := VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, bad, signers(4, 5)...), tNow)
		wantErr(t, err, ErrMalformed)
		if err != nil && !strings.Contains(err.Error(), "negative number") {
			t.Errorf("size %s: error %q does not name the negative number", num, err)
		}
	}
}

// A name the device refuses (a component with "..", which it could not
// keep as a slot file) or a version number past 64 bits must be refused
// when the release is made and when it is read, not only on the device:
// one rule for every side (issue 12, item 10).
func TestAttackNameTheDeviceRefuses(t *testing.T) {
	for name, edit := range map[string]func(*Release){
		"component a..b": func(r *Release) { r.Images[0].Component = "a..b" },
		"product a..b":   func(r *Release) { r.Product = "a..b" },
		"version 2^64":   func(r *Release) { r.Images[0].Version = "1.0.18446744073709551616" },
	} {
		rel := goodRelease()
		edit(rel)
		_, err := NewReleaseEnvelope(rel)
		wantErr(t, err, ErrMalformed)
		p, _ := json.Marshal(releaseWire{SchemaVersion: 1, Product: rel.Product, Version: rel.Version,
			Created: formatTime(rel.Created), Expires: formatTime(rel.Expires), Images: rel.Images})
		_, err = VerifyRelease(goodRoot(), signedRawPayload(t, ReleasePayloadType, p, signers(4, 5)...), tNow)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: signed release read with %v, want ErrMalformed", name, err)
		}
	}
}
