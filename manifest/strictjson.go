package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/upkit/upkit/spec"
)

// fieldNames lists every JSON member name of this package's documents. A key
// that differs from one of them only in case is rejected, because
// encoding/json would otherwise match it case-insensitively.
func fieldNames() []string {
	return []string{
		// envelope
		"payloadType", "payload", "signatures", "keyid", "sig",
		// root
		"schemaVersion", "version", "expires", "keys", "algorithm", "public",
		"roles", "root", "release", "keyids", "threshold",
		// release
		"product", "created", "images", "component", "type", "securityVersion",
		"hardware", "package", "digest", "size", "deltas",
		"fromPayloadDigest", "fromPackageDigest",
	}
}

// jsonRules are the limits and names of spec's strict JSON reader for this
// package's documents.
func jsonRules() spec.JSONRules {
	return spec.JSONRules{MaxSize: MaxDocumentSize, MaxDepth: MaxJSONDepth, MaxElements: MaxJSONElements, Fields: fieldNames()}
}

// decodeStrict reads data with spec's strict JSON reader (spec.CheckJSON:
// duplicate keys, case variants, nulls, negative numbers, trailing data,
// depth and size; then, for documents, the schemaVersion) and decodes it
// into v, refusing unknown and missing members (spec.DecodeJSON). what
// names the document in errors.
func decodeStrict(data []byte, what string, v any, document bool) error {
	if err := spec.CheckJSON(data, what, jsonRules()); err != nil {
		return jsonError(err)
	}
	if document {
		if err := checkSchemaVersion(data, what); err != nil {
			return err
		}
	}
	return jsonError(spec.DecodeJSON(data, what, v))
}

// jsonError maps an error of spec's JSON reader to this package's
// sentinels: ErrDuplicateKey (which also matches ErrMalformed),
// ErrTooLarge or ErrMalformed.
func jsonError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spec.ErrDuplicateKey):
		return errorf(ErrDuplicateKey, []error{ErrMalformed}, "%v", err)
	case errors.Is(err, spec.ErrTooLarge):
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	default:
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
}

// checkSchemaVersion reads only the schemaVersion member of a document that
// passed spec.CheckJSON, so that a newer document is reported as such
// rather than as having unknown fields.
func checkSchemaVersion(data []byte, what string) error {
	var head struct {
		SchemaVersion json.RawMessage `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if head.SchemaVersion == nil {
		return fmt.Errorf("%w: %s: missing schemaVersion", ErrMalformed, what)
	}
	if string(head.SchemaVersion) != strconv.Itoa(SchemaVersion) {
		return errorf(ErrSchemaVersion, []error{ErrMalformed}, "%s has schemaVersion %.20s, want %d", what, head.SchemaVersion, SchemaVersion)
	}
	return nil
}
