package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Doomed is what the layer after the one being applied deletes from the
// layers below it: the paths of its whiteouts and the directories it
// makes opaque. Applying a layer knowing it, the Unpacker does not create
// the files that would only be deleted right after (nothing is written
// twice); the tree it leaves after the next layer is the same.
//
// Only entries that cannot be seen from outside the deleted trees are
// skipped: regular files, device nodes, FIFOs and hard links, whose parent
// directory is reached without crossing a symbolic link (a deleted tree is
// then deleted where the entry would have been). Directories and symbolic
// links are always created: later entries may be reached through them. A
// hard link outside the deleted trees to a skipped file makes Apply fail
// with ErrSkippedLinkTarget; the caller then starts over without Doomed.
type Doomed struct {
	whiteouts map[string]struct{} // removed with everything below
	opaque    map[string]struct{} // everything strictly below removed
}

// ErrSkippedLinkTarget reports a hard link to a file that was skipped
// because the next layer deletes it (see Doomed).
var ErrSkippedLinkTarget = errors.New("the target was not created, as the next layer deletes it")

// ScanDoomed reads the next layer's tar stream and returns what it deletes.
// It returns nil (nothing is skipped) if that layer has a hard link into
// what it deletes, which could keep a deleted file alive, or nothing to
// delete.
func ScanDoomed(ctx context.Context, layer io.Reader) (*Doomed, error) {
	d := &Doomed{whiteouts: make(map[string]struct{}), opaque: make(map[string]struct{})}
	var links []string
	tr := tar.NewReader(layer)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar header: %w", err)
		}
		if len(hdr.Name) > maxPathLen {
			return nil, nil
		}
		unsafeDir, name := splitPath(cleanPath(hdr.Name))
		switch {
		case hdr.Typeflag == tar.TypeLink:
			links = append(links, cleanPath(hdr.Linkname))
		case strings.HasPrefix(name, whiteoutPrefix):
			target, opaque, meta, ok := parseWhiteout(name)
			switch {
			case meta: // AUFS metadata: ignored
			case !ok:
				return nil, nil // invalid: applying it fails
			case opaque:
				d.opaque[unsafeDir] = struct{}{}
			default:
				d.whiteouts[joinPath(unsafeDir, target)] = struct{}{}
			}
		}
	}
	if len(d.whiteouts) == 0 && len(d.opaque) == 0 {
		return nil, nil
	}
	for _, l := range links {
		if d.covers(l) {
			return nil, nil
		}
	}
	return d, nil
}

// covers reports whether the clean path p is deleted by d.
func (d *Doomed) covers(p string) bool {
	if p == "" {
		return false
	}
	if _, ok := d.whiteouts[p]; ok {
		return true
	}
	for {
		parent, _ := splitPath(p)
		if _, ok := d.opaque[parent]; ok {
			return true
		}
		if parent == "" {
			return false
		}
		if _, ok := d.whiteouts[parent]; ok {
			return true
		}
		p = parent
	}
}

// ApplyBefore is Apply for a layer followed by one that deletes next (nil:
// nothing known). See Doomed.
func (u *Unpacker) ApplyBefore(ctx context.Context, layer io.Reader, next *Doomed) (Stats, error) {
	u.doomed = next
	clear(u.skipped)
	defer func() {
		u.doomed = nil
		clear(u.skipped)
	}()
	return u.Apply(ctx, layer)
}

// skip reports whether the entry at unsafePath, of type typ, in the
// directory h is one the next layer deletes and need not be created.
func (u *Unpacker) skip(h dirHandle, unsafePath string, typ byte) bool {
	if u.doomed == nil || !h.exact || !u.doomed.covers(unsafePath) {
		return false
	}
	switch typ {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeLink:
	default:
		return false
	}
	u.skipped[unsafePath] = struct{}{}
	u.stats.Skipped++
	return true
}
