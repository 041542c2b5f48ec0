package tampertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// node is a JSON value that keeps object members in document order and
// allows duplicate keys, so that mutations can re-order and duplicate them.
// Scalars are kept as their raw JSON text.
type node struct {
	obj   []member // object members (isObj)
	arr   []*node  // array elements (isArr)
	raw   string   // scalar JSON text (string, number, true, false, null)
	isObj bool
	isArr bool
}

type member struct {
	key string
	val *node
}

func parseTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseNode(dec)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return n, nil
}

func parseNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{isObj: true}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseNode(dec)
				if err != nil {
					return nil, err
				}
				n.obj = append(n.obj, member{kt.(string), v})
			}
			_, err := dec.Token() // '}'
			return n, err
		case '[':
			n := &node{isArr: true}
			for dec.More() {
				v, err := parseNode(dec)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, v)
			}
			_, err := dec.Token() // ']'
			return n, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		b, _ := json.Marshal(t)
		return &node{raw: string(b)}, nil
	case json.Number:
		return &node{raw: t.String()}, nil
	case bool:
		return &node{raw: fmt.Sprint(t)}, nil
	case nil:
		return &node{raw: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// encode writes n compactly, members in their order, duplicates kept.
// Strings are written with encoding/json's escaping except that the raw
// text of scalars is kept as parsed or set.
func (n *node) encode(b *strings.Builder) {
	switch {
	case n.isObj:
		b.WriteByte('{')
		for i, m := range n.obj {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(m.key)
			b.Write(k)
			b.WriteByte(':')
			m.val.encode(b)
		}
		b.WriteByte('}')
	case n.isArr:
		b.WriteByte('[')
		for i, e := range n.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			e.encode(b)
		}
		b.WriteByte(']')
	default:
		b.WriteString(n.raw)
	}
}

func (n *node) bytes() []byte {
	var b strings.Builder
	n.encode(&b)
	return []byte(b.String())
}

func (n *node) clone() *node {
	c := &node{raw: n.raw, isObj: n.isObj, isArr: n.isArr}
	for _, m := range n.obj {
		c.obj = append(c.obj, member{m.key, m.val.clone()})
	}
	for _, e := range n.arr {
		c.arr = append(c.arr, e.clone())
	}
	return c
}

// path addresses a value in a tree: object member indexes and array
// indexes, in turn.
type path []int

// at returns the node at p and, for the last step, its parent.
func (n *node) at(p path) (parent, target *node) {
	target = n
	for _, i := range p {
		parent = target
		if target.isObj {
			target = target.obj[i].val
		} else {
			target = target.arr[i]
		}
	}
	return parent, target
}

// walk calls f for every value below the root (not the root itself), with
// its path and, for object members, its key.
func (n *node) walk(p path, f func(p path, key string, v *node)) {
	for i, m := range n.obj {
		q := append(append(path{}, p...), i)
		f(q, m.key, m.val)
		m.val.walk(q, f)
	}
	for i, e := range n.arr {
		q := append(append(path{}, p...), i)
		f(q, "", e)
		e.walk(q, f)
	}
}

// jsonMutation is a changed JSON document and what was changed.
type jsonMutation struct {
	name string
	// path is the key path of the change ("signatures[0].keyid").
	path string
	op   string
	doc  []byte
}

// Unicode look-alikes: Cyrillic and Greek letters, a non-breaking hyphen,
// a fullwidth digit, and the two letters that encoding/json's case folding
// maps to ASCII (KELVIN SIGN -> k, LATIN SMALL LETTER LONG S -> s).
var confusables = map[rune]string{
	'a': "\u0430", 'e': "\u0435", 'o': "\u043e", 'p': "\u0440", 'c': "\u0441",
	'i': "\u0456", 'x': "\u0445", 'y': "\u0443", 'k': "\u212a", 's': "\u017f",
	'-': "\u2011", '1': "\uff11", '0': "\u03bf",
}

// confuse replaces the first character of s that has a look-alike; ok is
// false when none has.
func confuse(s string) (string, bool) {
	for i, r := range s {
		if c, ok := confusables[r]; ok {
			return s[:i] + c + s[i+len(string(r)):], true
		}
	}
	return "", false
}

// wrongTypes are values of every JSON type, to put where another is due.
var wrongTypes = []string{`null`, `true`, `0`, `-1`, `1.5`, `1e3`, `18446744073709551616`, `"1"`, `""`, `[]`, `{}`, `[null]`, `{"a":1}`}

// mutateJSON returns the structural mutations of doc: for every member
// and element, removing, duplicating (same and different value),
// renaming (case variants, look-alikes, unknown names), re-typing,
// oversizing, emptying and look-alike values; and every object re-ordered.
// Each mutation changes exactly one thing.
func mutateJSON(doc []byte) ([]jsonMutation, error) {
	root, err := parseTree(doc)
	if err != nil {
		return nil, err
	}
	var out []jsonMutation
	add := func(op, where string, t *node) {
		out = append(out, jsonMutation{name: op + " at " + where, path: where, op: op, doc: t.bytes()})
	}
	// Names of paths, for reports.
	names := map[string]string{}
	var name func(p path) string
	name = func(p path) string {
		var b strings.Builder
		cur := root
		for _, i := range p {
			if cur.isObj {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(cur.obj[i].key)
				cur = cur.obj[i].val
			} else {
				fmt.Fprintf(&b, "[%d]", i)
				cur = cur.arr[i]
			}
		}
		return b.String()
	}
	var paths []path
	root.walk(nil, func(p path, _ string, _ *node) { paths = append(paths, p) })
	for _, p := range paths {
		names[fmt.Sprint(p)] = name(p)
	}

	// Re-order: reverse the members of one object (objects with 2+ members).
	reorderable := append([]path{nil}, paths...)
	for _, p := range reorderable {
		_, v := root.at(p)
		if !v.isObj || len(v.obj) < 2 {
			continue
		}
		t := root.clone()
		_, tv := t.at(p)
		for i, j := 0, len(tv.obj)-1; i < j; i, j = i+1, j-1 {
			tv.obj[i], tv.obj[j] = tv.obj[j], tv.obj[i]
		}
		where := "$"
		if p != nil {
			where = names[fmt.Sprint(p)]
		}
		add("reorder", where, t)
	}

	bigDone := false
	for _, p := range paths {
		where := names[fmt.Sprint(p)]
		parent, v := root.at(p)
		idx := p[len(p)-1]
		mut := func(op string, f func(parent, v *node)) {
			t := root.clone()
			tp, tv := t.at(p)
			f(tp, tv)
			add(op, where, t)
		}
		setRaw := func(op, raw string) {
			mut(op, func(_, tv *node) { *tv = node{raw: raw} })
		}
		// Remove it.
		mut("delete", func(tp, _ *node) {
			if tp.isObj {
				tp.obj = append(tp.obj[:idx:idx], tp.obj[idx+1:]...)
			} else {
				tp.arr = append(tp.arr[:idx:idx], tp.arr[idx+1:]...)
			}
		})
		// Duplicate it, with the same value and with another one.
		mut("duplicate", func(tp, tv *node) {
			if tp.isObj {
				m := member{tp.obj[idx].key, tv.clone()}
				tp.obj = append(tp.obj[:idx+1:idx+1], append([]member{m}, tp.obj[idx+1:]...)...)
			} else {
				tp.arr = append(tp.arr[:idx+1:idx+1], append([]*node{tv.clone()}, tp.arr[idx+1:]...)...)
			}
		})
		if parent.isObj {
			key := parent.obj[idx].key
			mut("duplicate-key-other-value", func(tp, tv *node) {
				m := member{key, &node{raw: `"other"`}}
				if !tv.isObj && !tv.isArr && strings.HasPrefix(tv.raw, `"`) {
					m.val = &node{raw: `0`}
				}
				tp.obj = append(tp.obj, m)
			})
			// Rename the key.
			renames := map[string]string{
				"upper-case-key": strings.ToUpper(key[:1]) + key[1:],
				"unknown-key":    key + "X",
				"escaped-key":    key, // set below through raw escaping
			}
			if c, ok := confuse(key); ok {
				renames["confusable-key"] = c
			}
			for op, nk := range renames {
				if op == "escaped-key" {
					continue
				}
				nk := nk
				mut(op, func(tp, _ *node) { tp.obj[idx].key = nk })
			}
			// The same key twice, once spelled with an escape: a parser
			// that compares raw bytes misses the duplicate.
			mut("duplicate-escaped-key", func(tp, tv *node) {
				m := member{key, tv.clone()}
				tp.obj = append(tp.obj, m)
				tp.obj[len(tp.obj)-1].key = "\x00esc:" + key
			})
		}
		// Wrong types.
		for _, w := range wrongTypes {
			if w == v.raw {
				continue
			}
			if jsonType(w) == jsonType(v.raw) && !v.isObj && !v.isArr || w == "[]" && v.isArr || w == "{}" && v.isObj || w == "[null]" && v.isArr || w == `{"a":1}` && v.isObj {
				setRaw("same-type:"+w, w)
				continue
			}
			setRaw("type:"+w, w)
		}
		if v.isObj || v.isArr {
			continue
		}
		if strings.HasPrefix(v.raw, `"`) {
			var s string
			_ = json.Unmarshal([]byte(v.raw), &s)
			str := func(op, s string) {
				b, _ := json.Marshal(s)
				setRaw(op, string(b))
			}
			if c, ok := confuse(s); ok {
				str("confusable-value", c)
			}
			str("oversized-value-65", s+strings.Repeat("a", 65))
			str("oversized-value-70000", s+strings.Repeat("a", 70000))
			if !bigDone {
				// Over every document size limit; once per document.
				str("oversized-value-2MiB", strings.Repeat("a", 2<<20))
				bigDone = true
			}
			str("upper-case-value", strings.ToUpper(s))
			str("space-padded-value", " "+s)
			str("nul-in-value", s+"\x00")
			if len(s) > 1 {
				str("truncated-value", s[:len(s)-1])
			}
			setRaw("invalid-utf8-value", `"`+strings.Trim(v.raw, `"`)+"\xff\"")
		} else if v.raw != "true" && v.raw != "false" && v.raw != "null" {
			for _, n := range []string{"-" + v.raw, v.raw + ".0", v.raw + "e0", "0" + v.raw, "99999999999999999999999", "-0"} {
				if n == v.raw {
					continue
				}
				setRaw("number:"+n, n)
			}
		}
	}
	// Escaped duplicate keys: write "\u00XX" for the key's first letter.
	for i := range out {
		if !strings.HasPrefix(out[i].op, "duplicate-escaped-key") {
			continue
		}
		d := string(out[i].doc)
		j := strings.Index(d, `"\u0000esc:`)
		if j < 0 {
			continue
		}
		k := j + len(`"\u0000esc:`)
		// k points at the key's first byte.
		out[i].doc = []byte(d[:j] + `"` + fmt.Sprintf(`\u%04x`, d[k]) + d[k+1:])
	}
	// Drop mutations that changed nothing (upper-casing "1.5.0", a key
	// that starts with a digit, ...).
	orig := string(root.bytes())
	kept := out[:0]
	for _, m := range out {
		if string(m.doc) != orig {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

// jsonType names the JSON type of a scalar's raw text.
func jsonType(raw string) string {
	switch {
	case raw == "null":
		return "null"
	case raw == "true" || raw == "false":
		return "bool"
	case strings.HasPrefix(raw, `"`):
		return "string"
	case strings.HasPrefix(raw, "["):
		return "array"
	case strings.HasPrefix(raw, "{"):
		return "object"
	}
	return "number"
}
