package imagepkg

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// ErrPathTooLong: a directory payload entry name or link target longer
// than MaxPathLength bytes or deeper than MaxPathDepth components. Like the
// errors of format.go, it also matches ErrRejected.
var ErrPathTooLong = rejection("imagepkg: path too long or too deep")

// Limits on the names of a directory payload, checked when packing
// (WriteTar) and extracting (Extract) before any work that depends on them.
const (
	// MaxPathLength bounds an entry name or a link target, in bytes
	// (Linux's PATH_MAX less its terminating NUL).
	MaxPathLength = 4095
	// MaxPathDepth bounds the number of components of an entry name or a
	// link target.
	MaxPathDepth = 256
	// MaxSymlinkHops bounds how many symbolic links of the archive one
	// link's target may go through, nested (Linux's MAXSYMLINKS).
	MaxSymlinkHops = 40
)

// checkPathLimits returns ErrPathTooLong if p (slash-separated) is longer
// than MaxPathLength or has more than MaxPathDepth components.
func checkPathLimits(what, p string) error {
	if len(p) > MaxPathLength {
		return fmt.Errorf("%w: %s of %d bytes (at most %d): %q", ErrPathTooLong, what, len(p), MaxPathLength, truncate(p))
	}
	if depth := strings.Count(p, "/") + 1; depth > MaxPathDepth {
		return fmt.Errorf("%w: %s with %d components (at most %d): %q", ErrPathTooLong, what, depth, MaxPathDepth, truncate(p))
	}
	return nil
}

// tree is the directory structure of a tar payload as its entries create
// it: one node per name, so that adding an entry costs the length of its
// name (never the square of its depth) and symbolic links can be followed
// as the kernel would follow them in the extracted directory.
type tree struct {
	root  *node
	links []*node // every symlink, in archive order
}

type node struct {
	name     string // last component ("" for the root)
	parent   *node
	kind     byte // tar.TypeDir (also for implied directories), TypeReg, TypeSymlink, TypeLink
	explicit bool // the archive has an entry for it (not only implied by a deeper name)
	children map[string]*node
	target   string // symlink target

	// Resolution of a symlink (resolve): where its target leads and how
	// many nested links that took.
	state      uint8 // 0 not yet, 1 in progress, 2 done
	res        *node // deepest existing directory or file reached
	resExtra   int   // components below res that do not exist in the archive
	resHops    int
	resEscapes bool
}

func newTree() *tree {
	return &tree{root: &node{kind: tar.TypeDir, explicit: true}}
}

// fullName is n's slash-separated name, for messages.
func (n *node) fullName() string {
	var parts []string
	for ; n != nil && n.parent != nil; n = n.parent {
		parts = append(parts, n.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/")
}

// add records an entry of kind at the clean, local, slash-separated name.
// Every parent must be a directory of the archive or not exist yet (it is
// then implied); the name itself must be new. It returns the new node and
// whether any parent was implied (created by this call).
func (t *tree) add(name string, kind byte, target string) (*node, error) {
	cur := t.root
	rest := name
	for {
		comp, more, found := strings.Cut(rest, "/")
		child := cur.children[comp]
		if !found {
			if child != nil {
				return nil, fmt.Errorf("%w: duplicate entry %q", ErrUnsafePath, truncate(name))
			}
			n := &node{name: comp, parent: cur, kind: kind, explicit: true, target: target}
			if cur.children == nil {
				cur.children = map[string]*node{}
			}
			cur.children[comp] = n
			if kind == tar.TypeSymlink {
				t.links = append(t.links, n)
			}
			return n, nil
		}
		if child == nil {
			child = &node{name: comp, parent: cur, kind: tar.TypeDir}
			if cur.children == nil {
				cur.children = map[string]*node{}
			}
			cur.children[comp] = child
		} else if child.kind != tar.TypeDir {
			return nil, fmt.Errorf("%w: entry %q is below %q, which is not a directory", ErrUnsafePath, truncate(name), truncate(child.fullName()))
		}
		cur, rest = child, more
	}
}

// lookup returns the node of the clean, local, slash-separated name, or nil,
// without following symlinks.
func (t *tree) lookup(name string) *node {
	cur := t.root
	for _, comp := range strings.Split(name, "/") {
		cur = cur.children[comp]
		if cur == nil {
			return nil
		}
	}
	return cur
}

// checkLinks resolves every symlink of the tree through the others, as the
// kernel would once the tree is on disk, and returns ErrUnsafePath for the
// first one (in archive order) that leads outside the root, is absolute,
// loops, or nests more than MaxSymlinkHops links. Each link is resolved
// once (the result is kept), so the work is linear in the total length of
// the targets.
func (t *tree) checkLinks() error {
	for _, l := range t.links {
		if err := t.resolve(l); err != nil {
			return err
		}
	}
	return nil
}

// resolve computes where symlink l leads.
func (t *tree) resolve(l *node) error {
	switch l.state {
	case 2:
		if l.resEscapes {
			return fmt.Errorf("%w: symlink %q -> %q leads outside the root", ErrUnsafePath, truncate(l.fullName()), truncate(l.target))
		}
		return nil
	case 1:
		return fmt.Errorf("%w: symlink %q -> %q is part of a loop of symlinks", ErrUnsafePath, truncate(l.fullName()), truncate(l.target))
	}
	l.state = 1
	if l.target == "" || path.IsAbs(l.target) || strings.HasPrefix(l.target, `\`) {
		l.state, l.resEscapes = 2, true
		return fmt.Errorf("%w: symlink %q -> %q is absolute or empty", ErrUnsafePath, truncate(l.fullName()), truncate(l.target))
	}
	cur, extra, hops := l.parent, 0, 1
	for _, comp := range strings.Split(l.target, "/") {
		switch {
		case comp == "" || comp == ".":
		case comp == "..":
			switch {
			case extra > 0:
				extra--
			case cur == t.root:
				l.state, l.resEscapes = 2, true
				return fmt.Errorf("%w: symlink %q -> %q leads outside the root", ErrUnsafePath, truncate(l.fullName()), truncate(l.target))
			default:
				cur = cur.parent
			}
		case extra > 0:
			extra++ // below a name the archive does not have: nothing to follow
		default:
			child := cur.children[comp]
			switch {
			case child == nil:
				extra = 1
			case child.kind == tar.TypeSymlink:
				if err := t.resolve(child); err != nil {
					l.state, l.resEscapes = 2, true
					return fmt.Errorf("%w (through %q)", err, truncate(l.fullName()))
				}
				if child.resHops+1 > hops {
					hops = child.resHops + 1
				}
				if hops > MaxSymlinkHops {
					l.state, l.resEscapes = 2, true
					return fmt.Errorf("%w: symlink %q -> %q goes through more than %d nested symlinks", ErrUnsafePath, truncate(l.fullName()), truncate(l.target), MaxSymlinkHops)
				}
				cur, extra = child.res, child.resExtra
			default:
				cur = child
			}
		}
	}
	l.state, l.res, l.resExtra, l.resHops = 2, cur, extra, hops
	return nil
}
