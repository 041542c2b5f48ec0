package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/signing"
)

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "generate signing keys and show key IDs",
		Description: `Keys sign image packages, trust roots and release manifests.
Private keys are encrypted with the password in UPKIT_PASSWORD (or typed at
a prompt) in the same format as cosign's key files, or live in a PKCS#11
token (HSM) named by a pkcs11: URI (see docs/HSM.md).

Example:
   UPKIT_PASSWORD=secret upkit key generate --out release
   upkit key id release.pub
   UPKIT_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so UPKIT_PKCS11_PIN=1234 \
     upkit key generate --out 'pkcs11:token=upkit;object=release' --pub release.pub`,
		Subcommands: []*cli.Command{
			{
				Name:      "generate",
				Usage:     "create a key pair: PREFIX.key (encrypted) and PREFIX.pub, or a key in a PKCS#11 token",
				ArgsUsage: " ",
				Description: `Writes PREFIX.key, encrypted with the password from UPKIT_PASSWORD
(set it to the empty string for an unencrypted-in-effect key) or typed twice
at a prompt, and PREFIX.pub (PEM). Prints the key ID on stdout.
Existing files are never overwritten.

With --out pkcs11:token=LABEL;object=KEYLABEL the key pair (ECDSA P-256) is
created inside the token, its private half sensitive and not extractable,
and the public key PEM is written to --pub. The module comes from
UPKIT_PKCS11_MODULE (or ?module-path= in the URI), the user PIN from
UPKIT_PKCS11_PIN (or ?pin-source=file:PATH), never from a flag. A label
already used in the token is refused.

Example:
   UPKIT_PASSWORD=secret upkit key generate --out keys/release --algorithm ed25519
   export UPKIT_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so UPKIT_PKCS11_PIN=1234
   upkit key generate --out 'pkcs11:token=upkit;object=release' --pub release.pub`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `PREFIX` (writes PREFIX.key and PREFIX.pub), or a pkcs11: URI to create the key in a token", Required: true},
					&cli.StringFlag{Name: "pub", Usage: "with a pkcs11: --out, write the public key PEM to `PATH`"},
					&cli.StringFlag{Name: "algorithm", Aliases: []string{"a"}, Value: signing.AlgorithmECDSAP256, Usage: "`ALG`: ecdsa-p256 or ed25519 (tokens: ecdsa-p256)"},
				},
				Action: keyGenerate,
			},
			{
				Name:      "id",
				Usage:     "print the key ID of a public or private key",
				ArgsUsage: "FILE|KEYREF",
				Description: `The key ID is the lowercase hex sha256 of the DER SubjectPublicKeyInfo;
trust roots and signatures name keys by it. FILE may be a .pub file, a
private key file (asks for its password), a KMS URI or a pkcs11: URI
(module and PIN from UPKIT_PKCS11_MODULE and UPKIT_PKCS11_PIN).

Example:
   upkit key id release.pub
   upkit key id 'pkcs11:token=upkit;object=release'`,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print key ID and algorithm as JSON"}},
				Action: keyID,
			},
			{
				Name:      "export-pub",
				Usage:     "print the public key (PEM) of a private key file, KMS key or PKCS#11 token key",
				ArgsUsage: "KEYREF",
				Description: `Example:
   upkit key export-pub release.key > release.pub
   upkit key export-pub 'pkcs11:token=upkit;object=release' > release.pub`,
				Action: keyExportPub,
			},
		},
	}
}

func keyGenerate(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	if signing.IsPKCS11Ref(c.String("out")) {
		return keyGeneratePKCS11(c)
	}
	if c.IsSet("pub") {
		return usageError("--pub is only for keys created in a token (--out pkcs11:...); a key file's public key goes to PREFIX.pub")
	}
	alg := c.String("algorithm")
	priv, err := signing.Generate(alg)
	if err != nil {
		if errors.Is(err, signing.ErrAlgorithm) {
			return usageError("%v", err)
		}
		return err
	}
	pw, err := passwordFunc(c)(true)
	if err != nil {
		return err
	}
	k, err := signing.WriteKeyPair(c.String("out"), priv, pw)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s.key and %s.pub (%s)\n", c.String("out"), c.String("out"), k.Algorithm)
	fmt.Fprintln(c.App.Writer, k.ID)
	return nil
}

// keyGeneratePKCS11 creates a key pair inside a PKCS#11 token and writes
// its public key to --pub.
func keyGeneratePKCS11(c *cli.Context) error {
	ref, pub := c.String("out"), c.String("pub")
	if alg := c.String("algorithm"); alg != signing.AlgorithmECDSAP256 {
		return usageError("--algorithm %s: keys in a token are %s", alg, signing.AlgorithmECDSAP256)
	}
	if _, err := signing.ParsePKCS11URI(ref); err != nil {
		return usageError("--out: %v", err)
	}
	if pub != "" {
		if _, err := os.Lstat(pub); err == nil {
			return fmt.Errorf("%w: %s", signing.ErrExists, pub)
		}
	}
	s, err := signing.GeneratePKCS11(c.Context, ref, signing.PKCS11OptionsFromEnv())
	if err != nil {
		return err
	}
	k := s.Public()
	if pub != "" {
		if err := atomicfile.WriteBytes(pub, k.PEM(), 0o644); err != nil {
			return fmt.Errorf("the key was created in the token, but writing its public key failed (export it with upkit key export-pub): %w", err)
		}
		fmt.Fprintf(c.App.ErrWriter, "created %s key in the token; public key in %s\n", k.Algorithm, pub)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "created %s key in the token; export its public key with: upkit key export-pub '%s'\n", k.Algorithm, ref)
	}
	fmt.Fprintln(c.App.Writer, k.ID)
	return nil
}

// publicKeyOf reads a public key from a .pub file, or from a private key
// reference (key file, KMS URI or pkcs11: URI).
func publicKeyOf(c *cli.Context, ref string) (*pubkey.Key, error) {
	if !signing.IsKMSRef(ref) && !signing.IsPKCS11Ref(ref) {
		data, err := readLimited(ref, signing.MaxKeyFileSize)
		if err != nil {
			return nil, err
		}
		if k, err := pubkey.ParsePEM(data); err == nil {
			return k, nil
		}
	}
	s, err := loadSigner(c, ref)
	if err != nil {
		return nil, err
	}
	return s.Public(), nil
}

func keyID(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one key file"); err != nil {
		return err
	}
	k, err := publicKeyOf(c, c.Args().First())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(map[string]string{"keyid": k.ID, "algorithm": k.Algorithm})
	}
	fmt.Fprintln(c.App.Writer, k.ID)
	return nil
}

func keyExportPub(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one key reference"); err != nil {
		return err
	}
	k, err := publicKeyOf(c, c.Args().First())
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(k.PEM())
	return err
}
