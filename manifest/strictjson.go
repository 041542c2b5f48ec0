package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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

// foldKey maps s to a key that is equal for two strings exactly when
// encoding/json would match them as the same struct field name (Unicode
// simple case folding, as bytes.EqualFold).
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

type jsonFrame struct {
	object  bool
	keys    map[string]struct{} // folded keys seen (objects)
	wantKey bool                // objects: the next string is a key
	key     string              // objects: the current member name
	n       int                 // members or elements so far
}

// checkJSON walks data token by token and rejects what encoding/json
// tolerates but upkit's documents must not contain: invalid UTF-8, a
// top-level value other than an object, trailing data after it, duplicate
// keys at any depth (case-insensitively), keys spelled with another case
// than a known field name, null values, nesting deeper than MaxJSONDepth
// and objects or arrays with more than MaxJSONElements members. what names
// the document in errors.
func checkJSON(data []byte, what string) error {
	if len(data) > MaxDocumentSize {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, what, len(data), MaxDocumentSize)
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	names := fieldNames()
	known := make(map[string]string, len(names))
	for _, f := range names {
		known[foldKey(f)] = f
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	path := func() string {
		var b strings.Builder
		b.WriteString("$")
		for _, f := range stack {
			if f.object {
				if f.key != "" {
					k := f.key
					if len(k) > 64 {
						k = k[:64] + "..."
					}
					if strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
						k = strconv.Quote(k)
					}
					b.WriteString("." + k)
				}
			} else {
				b.WriteString("[" + strconv.Itoa(f.n-1) + "]")
			}
		}
		return b.String()
	}
	fail := func(sentinel error, format string, args ...any) error {
		if sentinel == ErrDuplicateKey {
			return errorf(sentinel, []error{ErrMalformed}, "%s at %s (offset %d): %s", what, path(), dec.InputOffset(), fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("%w: %s at %s (offset %d): %s", sentinel, what, path(), dec.InputOffset(), fmt.Sprintf(format, args...))
	}
	// value records that a value (scalar or container) starts in the current
	// container.
	value := func() error {
		if len(stack) == 0 {
			return nil
		}
		top := stack[len(stack)-1]
		if top.object {
			top.wantKey = true
			return nil
		}
		top.n++
		if top.n > MaxJSONElements {
			return fail(ErrTooLarge, "more than %d array elements", MaxJSONElements)
		}
		return nil
	}
	started := false
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: %s: unexpected end of JSON", ErrMalformed, what)
			}
			return fail(ErrMalformed, "%v", err)
		}
		if !started {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return fmt.Errorf("%w: %s: want a JSON object", ErrMalformed, what)
			}
			started = true
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if err := value(); err != nil {
					return err
				}
				if len(stack) >= MaxJSONDepth {
					return fail(ErrTooLarge, "nested deeper than %d", MaxJSONDepth)
				}
				f := &jsonFrame{object: t == '{', wantKey: t == '{'}
				if f.object {
					f.keys = make(map[string]struct{})
				}
				stack = append(stack, f)
			default: // '}' or ']'
				stack = stack[:len(stack)-1]
			}
		case string:
			top := stack[len(stack)-1]
			if top.object && top.wantKey {
				fk := foldKey(t)
				if _, dup := top.keys[fk]; dup {
					top.key = t
					return fail(ErrDuplicateKey, "key %.64q appears more than once", t)
				}
				if exact, ok := known[fk]; ok && exact != t {
					return fail(ErrMalformed, "key %.64q: field names are case-sensitive, want %q", t, exact)
				}
				top.n++
				if top.n > MaxJSONElements {
					return fail(ErrTooLarge, "more than %d object members", MaxJSONElements)
				}
				top.keys[fk] = struct{}{}
				top.key = t
				top.wantKey = false
				continue
			}
			if err := value(); err != nil {
				return err
			}
		case nil:
			if err := value(); err != nil {
				return err
			}
			return fail(ErrMalformed, "null is not allowed")
		case json.Number:
			if err := value(); err != nil {
				return err
			}
			// No number in upkit's documents is negative; "-0" would
			// otherwise decode as 0 into signed fields.
			if strings.HasPrefix(string(t), "-") {
				return fail(ErrMalformed, "negative number %.32s", t)
			}
		default: // bool
			if err := value(); err != nil {
				return err
			}
		}
		if len(stack) == 0 {
			break
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: trailing data after the JSON object (offset %d)", ErrMalformed, what, dec.InputOffset())
	}
	return nil
}

// decodeStrict checks data with checkJSON (and, for documents, its
// schemaVersion) and decodes it into v, rejecting unknown fields.
func decodeStrict(data []byte, what string, v any, document bool) error {
	if err := checkJSON(data, what); err != nil {
		return err
	}
	if document {
		if err := checkSchemaVersion(data, what); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return checkRequired(data, v, what)
}

// checkRequired refuses data that lacks a member the canonical encoding of
// the decoded value has: every field without omitempty is required, so a
// missing integer is an error rather than a silent 0. (Unknown members were
// refused by the decoder, so the two member sets must be equal.)
func checkRequired(data []byte, v any, what string) error {
	canon, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	have, err := memberPaths(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	want, err := memberPaths(canon)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	var missing []string
	for p := range want {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%w: %s: missing member %s", ErrMalformed, what, missing[0])
	}
	return nil
}

// memberPaths lists the paths of every object member in a JSON document
// ("images[0].payload.size"). data has passed checkJSON or was encoded by
// encoding/json, so its depth and size are bounded.
func memberPaths(data []byte) (map[string]bool, error) {
	type frame struct {
		prefix  string
		object  bool
		wantKey bool
		n       int
	}
	paths := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	// next returns the path of the value that starts now in the current container.
	var key string
	next := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.object {
			top.wantKey = true
			return top.prefix + key
		}
		p := top.prefix + "[" + strconv.Itoa(top.n) + "]"
		top.n++
		return p
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return paths, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				p := next()
				prefix := p
				if t == '{' && p != "" {
					prefix += "."
				}
				stack = append(stack, &frame{prefix: prefix, object: t == '{', wantKey: t == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top := stack[len(stack)-1]; top.object && top.wantKey {
				key = t
				top.wantKey = false
				paths[top.prefix+t] = true
				continue
			}
			next()
		default:
			next()
		}
	}
}

// checkSchemaVersion reads only the schemaVersion member of a document that
// passed checkJSON, so that a newer document is reported as such rather than
// as having unknown fields.
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
