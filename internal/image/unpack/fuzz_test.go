package unpack

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// plantLayer is applied before the fuzzed layers: symbolic links and hard
// links that point outside the root, or try to, for the fuzzed entries to
// go through.
var plantLayer = []ent{
	symlink("rel", "../outside"),
	symlink("abs", "$OUT"),
	symlink("up", "../../../.."),
	symlink("file", "$TMP/sentinel.txt"),
	symlink("loop", "loop"),
	dir("d"),
	file("d/f", "x"),
	symlink("d/up", "../.."),
	symlink("d/abs", "$OUT/sub"),
	hardlink("hl", "d/f"),
	fifo("fifo"),
}

// fuzzCheck applies the plant layer and then layers, whatever they hold,
// and fails if anything outside the root changed.
func fuzzCheck(t *testing.T, e *testEnv, layers ...[]byte) {
	before := e.snapshot(t)
	all := append([][]byte{e.buildTar(t, plantLayer)}, layers...)
	_ = e.applyRaw(t, all...) // errors are fine, escapes and panics are not
	if diff := cmp.Diff(before, e.snapshot(t)); diff != "" {
		t.Fatalf("files outside the root changed (-before +after):\n%s", diff)
	}
}

// FuzzApply applies arbitrary bytes as a layer.
func FuzzApply(f *testing.F) {
	e := newEnv(f)
	for _, group := range [][]applyCase{escapeCases, behaviourCases} {
		for _, tc := range group {
			for _, l := range tc.layers {
				if data := e.buildTar(f, l); len(data) <= 64<<10 {
					f.Add(data)
				}
			}
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCheck(t, newEnv(t), fixChecksums(data))
	})
}

// fixChecksums returns a copy of data with the checksum of every block
// that archive/tar would read as a header made right, so that mutated
// headers get past the checksum and reach the unpacker.
func fixChecksums(data []byte) []byte {
	b := bytes.Clone(data)
	for off := 0; off+512 <= len(b); {
		blk := b[off : off+512]
		if bytes.Count(blk, []byte{0}) == 512 {
			off += 512
			continue
		}
		copy(blk[148:156], "        ")
		sum := 0
		for _, c := range blk {
			sum += int(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
		size, err := strconv.ParseInt(strings.Trim(string(blk[124:136]), " \x00"), 8, 64)
		if err != nil || size < 0 || size > int64(len(b)) {
			size = 0
		}
		off += 512 + int(size+511)/512*512
	}
	return b
}

// fuzzNames are the path components FuzzApplyEntries builds names from.
var fuzzNames = []string{
	"a", "b", "d", "f", "..", ".", "", "rel", "abs", "up", "file", "loop", "hl", "fifo",
	"outside", "sentinel.txt", "secret", "sub", "$OUT", "$TMP", "$TMPREL",
	".wh.a", ".wh.rel", ".wh.d", ".wh.up", ".wh.outside", ".wh..wh..opq", ".wh..wh.plnk", ".wh..",
}

// decodeLayers turns fuzz bytes into well-formed layers of tricky
// entries: each entry is an operation byte, a name length, a link length
// and an extra byte, followed by the components.
func decodeLayers(data []byte) [][]ent {
	take := func(n int) string {
		var parts []string
		for ; n > 0 && len(data) > 0; n-- {
			parts = append(parts, fuzzNames[int(data[0])%len(fuzzNames)])
			data = data[1:]
		}
		return strings.Join(parts, "/")
	}
	var layers [][]ent
	var cur []ent
	for len(data) >= 4 && len(layers) < 4 {
		op, nName, nLink, extra := data[0], int(data[1]%5)+1, int(data[2]%5), data[3]
		data = data[4:]
		name, link := take(nName), take(nLink)
		// archive/tar refuses a trailing slash on anything but a directory.
		if name = strings.TrimRight(name, "/"); name == "" {
			name = "."
		}
		switch op % 9 {
		case 0:
			cur = append(cur, file(name, strings.Repeat("x", int(extra))))
		case 1:
			cur = append(cur, dir(name).with(func(e *ent) { e.mode = int64(extra) << 4 }))
		case 2:
			if link == "" {
				link = "/"
			}
			cur = append(cur, symlink(name, link))
		case 3:
			cur = append(cur, hardlink(name, link))
		case 4:
			cur = append(cur, fifo(name))
		case 5:
			cur = append(cur, wh(name+"/.wh."+fuzzNames[int(extra)%len(fuzzNames)]))
		case 6:
			cur = append(cur, wh(name+"/"+whiteoutOpaque))
		case 7:
			cur = append(cur, file(name, "").with(func(e *ent) {
				e.xattrs = map[string]string{"user.x": "y", "trusted.t": string(rune(extra))}
			}))
		case 8:
			layers = append(layers, cur)
			cur = nil
		}
	}
	return append(layers, cur)
}

// FuzzApplyEntries applies well-formed layers made of tricky entries.
func FuzzApplyEntries(f *testing.F) {
	f.Add([]byte{2, 0, 1, 0, 7, 8, 3, 1, 0, 1, 2, 13, 0})
	f.Add([]byte{0, 1, 0, 9, 8, 0, 1, 0, 15, 8, 0, 0, 0, 8, 5, 0, 0, 0, 9})
	f.Add([]byte{6, 1, 0, 0, 8, 8, 0, 0, 0, 9, 18, 3, 2, 0, 19, 15})
	f.Add([]byte{3, 1, 1, 0, 0, 4, 1, 2, 0, 1, 1, 0, 18, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newEnv(t)
		var tars [][]byte
		for _, l := range decodeLayers(data) {
			tars = append(tars, e.buildTar(t, l))
		}
		fuzzCheck(t, e, tars...)
	})
}
