// Command stdlib is the baseline of bench/device-size.sh: a verifier that
// uses only the Go standard library. It checks a DSSE envelope against the
// release keys of a trust root (ECDSA P-256 or Ed25519, PEM keys in JSON)
// and the sha256 of an image file, which is the least a device must do.
//
//	usage: stdlib ROOT.json RELEASE.json IMAGE SHA256HEX
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

type root struct {
	Keys map[string]struct {
		Algorithm string `json:"algorithm"`
		Public    string `json:"public"`
	} `json:"keys"`
	Roles struct {
		Release struct {
			KeyIDs    []string `json:"keyids"`
			Threshold int      `json:"threshold"`
		} `json:"release"`
	} `json:"roles"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stdlib:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func readEnvelope(path string) (*envelope, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, err
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	return &env, payload, err
}

func pae(typ string, payload []byte) []byte {
	return []byte("DSSEv1 " + strconv.Itoa(len(typ)) + " " + typ + " " + strconv.Itoa(len(payload)) + " " + string(payload))
}

func run(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: stdlib ROOT.json RELEASE.json IMAGE SHA256HEX")
	}
	_, rootPayload, err := readEnvelope(args[0])
	if err != nil {
		return err
	}
	var r root
	if err := json.Unmarshal(rootPayload, &r); err != nil {
		return err
	}
	env, payload, err := readEnvelope(args[1])
	if err != nil {
		return err
	}
	msg := pae(env.PayloadType, payload)
	good := 0
	for _, s := range env.Signatures {
		k, ok := r.Keys[s.KeyID]
		if !ok {
			continue
		}
		block, _ := pem.Decode([]byte(k.Public))
		if block == nil {
			return errors.New("bad PEM")
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return err
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return err
		}
		switch p := pub.(type) {
		case *ecdsa.PublicKey:
			h := sha256.Sum256(msg)
			if ecdsa.VerifyASN1(p, h[:], sig) {
				good++
			}
		case ed25519.PublicKey:
			if ed25519.Verify(p, msg, sig) {
				good++
			}
		}
	}
	if good < r.Roles.Release.Threshold || good == 0 {
		return fmt.Errorf("%d valid signatures, threshold %d", good, r.Roles.Release.Threshold)
	}
	f, err := os.Open(args[2])
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != args[3] {
		return errors.New("image digest mismatch")
	}
	return nil
}
