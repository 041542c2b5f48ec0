package spec

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

// Sentinels of the strict JSON reader; a *JSONError wraps one of them.
var (
	// ErrMalformed: not a valid document (syntax, UTF-8, top level, null,
	// negative number, trailing data, case variant of a field name,
	// unknown or missing member, wrong type).
	ErrMalformed = errors.New("spec: malformed JSON document")
	// ErrDuplicateKey: an object repeats a key, compared as encoding/json
	// compares them (ignoring case).
	ErrDuplicateKey = errors.New("spec: duplicate JSON key")
	// ErrTooLarge: a document, nesting, object or array over its limit
	// (also returned by ReadFile for a file over its limit).
	ErrTooLarge = errors.New("spec: over size limit")
)

// JSONRules bound and shape the documents CheckJSON accepts. A zero limit
// selects its default.
type JSONRules struct {
	// MaxSize bounds the document, in bytes (0: no limit of its own).
	MaxSize int
	// MaxDepth bounds the nesting of objects and arrays (0: MaxJSONDepth).
	MaxDepth int
	// MaxElements bounds the members of one object or array (0:
	// MaxJSONElements).
	MaxElements int
	// Fields lists every member name of the schema. A key that differs
	// from one of them only in case is refused: encoding/json would match
	// it case-insensitively.
	Fields []string
}

// JSONError is an error of CheckJSON or DecodeJSON: which document, where
// in it, what. Its message does not repeat the sentinel, so that a format
// package wraps it with its own ("manifest: malformed document: release at
// $.images[0] (offset 41): null is not allowed").
type JSONError struct {
	Err    error  // ErrMalformed, ErrDuplicateKey or ErrTooLarge
	What   string // the document, as the caller named it
	Path   string // where: "$", "$.images[0].size"; "" for the whole document
	Offset int64  // input offset of the error (meaningful with Path)
	Detail string
}

func (e *JSONError) Error() string {
	if e.Path == "" {
		return e.What + ": " + e.Detail
	}
	return fmt.Sprintf("%s at %s (offset %d): %s", e.What, e.Path, e.Offset, e.Detail)
}

// Unwrap returns the sentinel.
func (e *JSONError) Unwrap() error { return e.Err }

// CheckJSON reads data token by token and refuses what encoding/json
// tolerates but upkit's documents must not contain: a document over
// rules.MaxSize, invalid UTF-8, a top-level value other than an object,
// trailing data after it, duplicate keys at any depth (case-insensitively),
// keys spelled with another case than one of rules.Fields, null values,
// negative numbers (no number in upkit's documents is negative, and "-0"
// would decode as 0), nesting deeper than rules.MaxDepth and objects or
// arrays with more than rules.MaxElements members. what names the document
// in errors, which are *JSONError.
func CheckJSON(data []byte, what string, rules JSONRules) error {
	if rules.MaxSize > 0 && len(data) > rules.MaxSize {
		return &JSONError{Err: ErrTooLarge, What: what, Detail: fmt.Sprintf("%d bytes, limit %d", len(data), rules.MaxSize)}
	}
	if !utf8.Valid(data) {
		return &JSONError{Err: ErrMalformed, What: what, Detail: "not valid UTF-8"}
	}
	if rules.MaxDepth <= 0 {
		rules.MaxDepth = MaxJSONDepth
	}
	if rules.MaxElements <= 0 {
		rules.MaxElements = MaxJSONElements
	}
	w := &jsonWalker{dec: json.NewDecoder(bytes.NewReader(data)), what: what, rules: rules,
		known: make(map[string]string, len(rules.Fields))}
	w.dec.UseNumber()
	for _, f := range rules.Fields {
		w.known[foldKey(f)] = f
	}
	return w.walk()
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
			m = min(m, f)
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

// jsonWalker is one run of CheckJSON.
type jsonWalker struct {
	dec   *json.Decoder
	what  string
	rules JSONRules
	known map[string]string // folded field name -> field name
	stack []*jsonFrame
}

func (w *jsonWalker) walk() error {
	tok, err := w.dec.Token()
	if err == nil {
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return &JSONError{Err: ErrMalformed, What: w.what, Detail: "want a JSON object"}
		}
	}
	for {
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &JSONError{Err: ErrMalformed, What: w.what, Detail: "unexpected end of JSON"}
			}
			return w.fail(ErrMalformed, "%v", err)
		}
		if err := w.token(tok); err != nil {
			return err
		}
		if len(w.stack) == 0 {
			break
		}
		tok, err = w.dec.Token()
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return &JSONError{Err: ErrMalformed, What: w.what,
			Detail: fmt.Sprintf("trailing data after the JSON object (offset %d)", w.dec.InputOffset())}
	}
	return nil
}

// token checks one token in its container.
func (w *jsonWalker) token(tok json.Token) error {
	switch t := tok.(type) {
	case json.Delim:
		if t == '}' || t == ']' {
			w.stack = w.stack[:len(w.stack)-1]
			return nil
		}
		return w.open(t == '{')
	case string:
		if top := w.stack[len(w.stack)-1]; top.object && top.wantKey {
			return w.key(top, t)
		}
		return w.value()
	case nil:
		if err := w.value(); err != nil {
			return err
		}
		return w.fail(ErrMalformed, "null is not allowed")
	case json.Number:
		if err := w.value(); err != nil {
			return err
		}
		if strings.HasPrefix(string(t), "-") {
			return w.fail(ErrMalformed, "negative number %.32s", t)
		}
		return nil
	default: // bool
		return w.value()
	}
}

// open starts an object or array.
func (w *jsonWalker) open(object bool) error {
	if err := w.value(); err != nil {
		return err
	}
	if len(w.stack) >= w.rules.MaxDepth {
		return w.fail(ErrTooLarge, "nested deeper than %d", w.rules.MaxDepth)
	}
	f := &jsonFrame{object: object, wantKey: object}
	if object {
		f.keys = make(map[string]struct{})
	}
	w.stack = append(w.stack, f)
	return nil
}

// key checks a member name of the object top.
func (w *jsonWalker) key(top *jsonFrame, k string) error {
	fk := foldKey(k)
	if _, dup := top.keys[fk]; dup {
		top.key = k
		return w.fail(ErrDuplicateKey, "key %.64q appears more than once", k)
	}
	if exact, ok := w.known[fk]; ok && exact != k {
		top.key = k
		return w.fail(ErrMalformed, "key %.64q: field names are case-sensitive, want %q", k, exact)
	}
	top.n++
	if top.n > w.rules.MaxElements {
		return w.fail(ErrTooLarge, "more than %d object members", w.rules.MaxElements)
	}
	top.keys[fk] = struct{}{}
	top.key = k
	top.wantKey = false
	return nil
}

// value records that a value (scalar or container) starts in the current
// container.
func (w *jsonWalker) value() error {
	if len(w.stack) == 0 {
		return nil
	}
	top := w.stack[len(w.stack)-1]
	if top.object {
		top.wantKey = true
		return nil
	}
	top.n++
	if top.n > w.rules.MaxElements {
		return w.fail(ErrTooLarge, "more than %d array elements", w.rules.MaxElements)
	}
	return nil
}

func (w *jsonWalker) fail(sentinel error, format string, args ...any) error {
	return &JSONError{Err: sentinel, What: w.what, Path: w.path(), Offset: w.dec.InputOffset(), Detail: fmt.Sprintf(format, args...)}
}

// path names the current position: "$.images[0].payload".
func (w *jsonWalker) path() string {
	var b strings.Builder
	b.WriteString("$")
	for _, f := range w.stack {
		if !f.object {
			b.WriteString("[" + strconv.Itoa(f.n-1) + "]")
			continue
		}
		if f.key == "" {
			continue
		}
		k := f.key
		if len(k) > 64 {
			k = k[:64] + "..."
		}
		if strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			k = strconv.Quote(k)
		}
		b.WriteString("." + k)
	}
	return b.String()
}

// DecodeJSON decodes data, which passed CheckJSON, into v (a pointer to a
// struct), refusing members v has no field for and members that v's
// canonical encoding has but data lacks: every field without omitempty is
// required, so a missing number is an error rather than a silent 0. Errors
// are *JSONError wrapping ErrMalformed.
func DecodeJSON(data []byte, what string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		detail := err.Error()
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			detail = fmt.Sprintf("member %s: JSON %s where %s expected", te.Field, te.Value, te.Type)
		}
		return &JSONError{Err: ErrMalformed, What: what, Detail: detail}
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return &JSONError{Err: ErrMalformed, What: what, Detail: err.Error()}
	}
	have, err := memberPaths(data)
	if err != nil {
		return &JSONError{Err: ErrMalformed, What: what, Detail: err.Error()}
	}
	want, err := memberPaths(canon)
	if err != nil {
		return &JSONError{Err: ErrMalformed, What: what, Detail: err.Error()}
	}
	var missing []string
	for p := range want {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &JSONError{Err: ErrMalformed, What: what, Detail: "missing member " + missing[0]}
	}
	return nil
}

// memberPaths lists the paths of every object member in a JSON document
// ("images[0].payload.size"). data has passed CheckJSON or was encoded by
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
	var key string
	// next returns the path of the value that starts now in the current
	// container.
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
			if t == '}' || t == ']' {
				stack = stack[:len(stack)-1]
				continue
			}
			prefix := next()
			if t == '{' && prefix != "" {
				prefix += "."
			}
			stack = append(stack, &frame{prefix: prefix, object: t == '{', wantKey: t == '{'})
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
