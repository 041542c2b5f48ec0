package manifest

import (
	"fmt"

	"github.com/upkit/upkit/spec"
)

// parseTypedEnvelope parses an envelope and checks its payload type.
func parseTypedEnvelope(data []byte, payloadType, what string) (*Envelope, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("%s envelope: %w", what, err)
	}
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("%w: %s envelope has payload type %q, want %q", ErrPayloadType, what, env.PayloadType, payloadType)
	}
	return env, nil
}

// verifyRole checks that at least role.Threshold distinct keys of the role
// made a valid signature over PAE(env.PayloadType, env.Payload).
//
// Signatures by keys outside the role are ignored, as are invalid ones, and
// a key counts once however many signatures name it. When the threshold is
// not met the error wraps ErrThreshold and, if no signature verified at
// all, ErrBadSignature (some trusted key's signature failed) or
// ErrUnknownKey (every signature was by a key outside the role).
func verifyRole(env *Envelope, keys map[string]*spec.PublicKey, role Role, what string) error {
	member := make(map[string]bool, len(role.KeyIDs))
	for _, id := range role.KeyIDs {
		member[id] = true
	}
	msg := PAE(env.PayloadType, env.Payload)
	valid := make(map[string]bool, role.Threshold)
	bad, unknown := 0, 0
	for _, s := range env.Signatures {
		k := keys[s.KeyID]
		if !member[s.KeyID] || k == nil {
			unknown++
			continue
		}
		if valid[s.KeyID] {
			continue // the same key counts once
		}
		if err := k.Verify(msg, s.Sig); err != nil {
			bad++
			continue
		}
		valid[s.KeyID] = true
	}
	if len(valid) >= role.Threshold {
		return nil
	}
	switch {
	case len(env.Signatures) == 0:
		return fmt.Errorf("%w: %s: unsigned, need %d signature(s)", ErrThreshold, what, role.Threshold)
	case len(valid) == 0 && bad > 0:
		return errorf(ErrBadSignature, []error{ErrThreshold}, "%s: %d signature(s) by trusted keys failed to verify, none valid, need %d", what, bad, role.Threshold)
	case len(valid) == 0:
		return errorf(ErrUnknownKey, []error{ErrThreshold}, "%s: all %d signature(s) are by keys the role does not trust, need %d", what, unknown, role.Threshold)
	default:
		return fmt.Errorf("%w: %s: %d valid signature(s) from distinct trusted keys, need %d (%d invalid, %d by untrusted keys)", ErrThreshold, what, len(valid), role.Threshold, bad, unknown)
	}
}
