package manifest

import "testing"

// BenchmarkVerifyRelease measures what a device pays per release check:
// envelope parse, two Ed25519 verifications, strict payload parse.
func BenchmarkVerifyRelease(b *testing.B) {
	root := goodRoot()
	env := signedRelease(b, goodRelease(), signers(4, 5)...)
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyRelease(root, env, tNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEnvelopeMax measures the strict parser on a document at
// MaxDocumentSize, the worst case a device can be sent.
func BenchmarkParseEnvelopeMax(b *testing.B) {
	p := make([]byte, MaxDocumentSize*3/4-256)
	for i := range p {
		p[i] = 'a'
	}
	data, err := (&Envelope{PayloadType: ReleasePayloadType, Payload: p}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEnvelope(data); err != nil {
			b.Fatal(err)
		}
	}
}
