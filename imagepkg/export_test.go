package imagepkg

import (
	"context"

	"github.com/upkit/upkit/spec"
)

// BuildForTest signs arbitrary metadata and appends arbitrary stored
// payload bytes, so that tests can make packages whose metadata lies.
func BuildForTest(ctx context.Context, m *Metadata, stored []byte, s spec.Signer) ([]byte, error) {
	reserved, err := reserveHeader(m, s)
	if err != nil {
		return nil, err
	}
	head, err := signHeader(ctx, m, s, reserved)
	if err != nil {
		return nil, err
	}
	return append(head, stored...), nil
}
