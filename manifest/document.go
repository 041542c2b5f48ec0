package manifest

import (
	"bytes"
	"fmt"
)

// Document is a trust root or release envelope, parsed strictly but NOT
// verified: for inspecting what a file holds.
type Document struct {
	Envelope *Envelope
	Root     *Root    // set for RootPayloadType
	Release  *Release // set for ReleasePayloadType
}

// ParseDocument parses a trust root or release envelope (ParseEnvelope,
// then ParseRoot or ParseRelease by payload type; ErrPayloadType for any
// other type). No signature is verified.
func ParseDocument(data []byte) (*Document, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, err
	}
	doc := &Document{Envelope: env}
	switch env.PayloadType {
	case RootPayloadType:
		doc.Root, err = ParseRoot(env.Payload)
	case ReleasePayloadType:
		doc.Release, err = ParseRelease(env.Payload)
	default:
		err = fmt.Errorf("%w: %q is neither %s nor %s", ErrPayloadType, env.PayloadType, RootPayloadType, ReleasePayloadType)
	}
	if err != nil {
		return nil, err
	}
	return doc, nil
}

// LooksLikeEnvelope reports whether data, the start of a file, looks like
// a JSON document rather than an image package or a patch: its first byte
// after white space is '{'. It does not validate anything.
func LooksLikeEnvelope(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}
