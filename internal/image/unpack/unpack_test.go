package unpack

import (
	"archive/tar"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

type layers = [][]ent

// applyCase is a sequence of layers applied to a fresh root. Every case
// checks that nothing next to the root changed (content, mode, owner,
// times, link count, xattrs) and that nothing new appeared there.
type applyCase struct {
	name    string
	root    bool   // needs root (skipped otherwise, except in CI)
	layers  layers // applied in order
	wantErr string // substring of the error, "" for success
	check   func(t *testing.T, e *testEnv)
}

// escapeCases are layers that try to reach outside the root. Modelled on
// umoci's tar_extract tests, containerd's archive "breakout" tests and
// moby/go-archive's.
var escapeCases = []applyCase{
	{
		name:   "dotdot file name",
		layers: layers{{file("../sentinel.txt", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "sentinel.txt", "pwned") },
	},
	{
		name:   "many dotdots to the host path",
		layers: layers{{file(strings.Repeat("../", 30)+"$TMPREL/sentinel.txt", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "$TMPREL/sentinel.txt", "pwned") },
	},
	{
		name:   "absolute name",
		layers: layers{{file("$TMP/sentinel.txt", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "$TMPREL/sentinel.txt", "pwned") },
	},
	{
		name:   "dotdot in the middle",
		layers: layers{{dir("a"), file("a/../../../sentinel.txt", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "sentinel.txt", "pwned") },
	},
	{
		name:   "dotdot directory with contents",
		layers: layers{{dir("../outside"), file("../outside/secret", "pwned"), dir("../outside/sub")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "outside/secret", "pwned")
			wantType(t, e, "outside/sub", unix.S_IFDIR)
		},
	},
	{
		name:   "write through relative symlink from a lower layer",
		layers: layers{{symlink("evil", "../outside")}, {file("evil/secret", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantSymlink(t, e, "evil", "../outside")
			wantFile(t, e, "outside/secret", "pwned")
		},
	},
	{
		name:   "write through absolute symlink from a lower layer",
		layers: layers{{symlink("evil", "$OUT")}, {file("evil/secret", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "$OUT/secret", "pwned") },
	},
	{
		name:   "write through symlink in the same layer",
		layers: layers{{symlink("evil", "$OUT"), file("evil/secret", "pwned"), file("evil/sub/file", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "$OUT/secret", "pwned")
			wantFile(t, e, "$OUT/sub/file", "pwned")
		},
	},
	{
		name:   "symlinked parent directory, nested entries",
		layers: layers{{symlink("evil", "$OUT")}, {dir("evil/sub"), file("evil/sub/file", "pwned"), symlink("evil/sub/l", "/x"), fifo("evil/sub/p")}},
		check: func(t *testing.T, e *testEnv) {
			wantType(t, e, "$OUT/sub", unix.S_IFDIR)
			wantFile(t, e, "$OUT/sub/file", "pwned")
		},
	},
	{
		name:   "chain of symlinks",
		layers: layers{{symlink("a", "b"), symlink("b", "c/../../outside")}, {file("a/secret", "pwned")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "outside/secret", "pwned") },
	},
	{
		name:   "symlink to many dotdots",
		layers: layers{{symlink("up", "../../../../../../.."), dir("d"), symlink("d/up", "../..")}, {file("up/sentinel.txt", "pwned"), file("d/up/x", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "sentinel.txt", "pwned")
			wantFile(t, e, "x", "pwned")
		},
	},
	{
		name:   "file over symlink to a host file",
		layers: layers{{symlink("evil", "$TMP/sentinel.txt"), symlink("rel", "../sentinel.txt")}, {file("evil", "pwned"), file("rel", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "evil", "pwned")
			wantFile(t, e, "rel", "pwned")
		},
	},
	{
		name: "metadata entries over symlinks to host files",
		root: true,
		layers: layers{
			{symlink("d", "$TMP/sentinel.txt"), symlink("f", "../sentinel.txt"), symlink("l", "$OUT/secret"), symlink("p", "$OUT/fifo")},
			{
				dir("d").with(func(e *ent) { e.mode, e.uid = 0o777, 99 }),
				hardlink("f", "l"),
				symlink("l", "$OUT/secret").with(func(e *ent) { e.uid, e.xattrs = 77, map[string]string{"trusted.x": "y"} }),
				fifo("p").with(func(e *ent) { e.mode, e.uid = 0o666, 5 }),
			},
		},
		check: func(t *testing.T, e *testEnv) {
			wantType(t, e, "d", unix.S_IFDIR)
			wantMode(t, e, "d", 0o777)
			wantSymlink(t, e, "f", "$OUT/secret")
			wantSymlink(t, e, "l", "$OUT/secret")
			wantType(t, e, "p", unix.S_IFIFO)
		},
	},
	{
		name:   "directory over symlink to a host directory",
		layers: layers{{symlink("evil", "$OUT")}, {dir("evil"), file("evil/secret", "mine")}},
		check: func(t *testing.T, e *testEnv) {
			wantType(t, e, "evil", unix.S_IFDIR)
			wantFile(t, e, "evil/secret", "mine")
		},
	},
	{
		name:   "dangling symlink to a host file as a parent directory",
		layers: layers{{symlink("evil", "$TMP/sentinel.txt"), symlink("rel", "../outside/sub")}, {file("evil/x", "pwned"), file("rel/y", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "$TMPREL/sentinel.txt/x", "pwned")
			wantFile(t, e, "outside/sub/y", "pwned")
		},
	},
	{
		name:    "symlink to a file inside the root as a parent directory",
		layers:  layers{{file("f", ""), symlink("evil", "/f")}, {file("evil/x", "pwned")}},
		wantErr: "not a directory",
	},
	{
		name:    "regular file as a parent directory",
		layers:  layers{{file("f", "")}, {file("f/x", "pwned")}},
		wantErr: "not a directory",
	},
	{
		name:    "hardlink to dotdot",
		layers:  layers{{hardlink("h", "../sentinel.txt")}},
		wantErr: "does not exist",
	},
	{
		name:    "hardlink to absolute host path",
		layers:  layers{{hardlink("h", "$TMP/sentinel.txt")}},
		wantErr: "does not exist",
	},
	{
		name:    "hardlink through absolute symlinked directory",
		layers:  layers{{symlink("evil", "$OUT")}, {hardlink("h", "evil/secret")}},
		wantErr: "does not exist",
	},
	{
		name:    "hardlink through relative symlinked directory",
		layers:  layers{{symlink("evil", "../outside")}, {hardlink("h", "evil/sub/file")}},
		wantErr: "does not exist",
	},
	{
		name:   "hardlink to a symlink pointing outside",
		layers: layers{{symlink("evil", "$TMP/sentinel.txt")}, {hardlink("h", "evil")}},
		check: func(t *testing.T, e *testEnv) {
			wantSymlink(t, e, "h", "$TMP/sentinel.txt")
			wantSameInode(t, e, "h", "evil")
		},
	},
	{
		name:   "file over a hardlink to a symlink pointing outside",
		layers: layers{{symlink("evil", "$TMP/sentinel.txt")}, {hardlink("h", "evil")}, {file("h", "pwned"), file("evil", "pwned")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "h", "pwned")
			wantFile(t, e, "evil", "pwned")
		},
	},
	{
		name:    "hardlink to the root",
		layers:  layers{{hardlink("h", "../")}},
		wantErr: "root directory",
	},
	{
		name:    "hardlink to a directory",
		layers:  layers{{dir("d"), hardlink("h", "d")}},
		wantErr: "is a directory",
	},
	{
		name:    "hardlink to a symlink loop's directory",
		layers:  layers{{symlink("loop", "loop"), hardlink("h", "loop/x")}},
		wantErr: "too many levels of symbolic links",
	},
	{
		name:   "hardlink named outside",
		layers: layers{{file("f", "x"), hardlink("../h", "f"), hardlink("$TMP/sentinel.txt", "/f")}},
		check:  func(t *testing.T, e *testEnv) { wantSameInode(t, e, "f", "h", "$TMPREL/sentinel.txt") },
	},
	{
		name:   "whiteout through absolute symlinked directory",
		layers: layers{{symlink("evil", "$OUT")}, {wh("evil/.wh.secret"), wh("evil/.wh.sub")}},
		check:  func(t *testing.T, e *testEnv) { wantSymlink(t, e, "evil", "$OUT") },
	},
	{
		name:   "whiteout through relative symlinked directory",
		layers: layers{{symlink("evil", "../outside")}, {wh("evil/.wh.secret"), wh("evil/.wh.sub")}},
	},
	{
		name:   "whiteout of a symlink removes the link only",
		layers: layers{{symlink("evil", "$OUT"), symlink("rel", "../outside")}, {wh(".wh.evil"), wh(".wh.rel")}},
		check:  func(t *testing.T, e *testEnv) { wantMissing(t, e, "evil", "rel") },
	},
	{
		name:   "whiteout with dotdot",
		layers: layers{{file("sentinel.txt", "mine")}, {wh("../.wh.sentinel.txt"), wh("../../.wh.outside")}},
		check:  func(t *testing.T, e *testEnv) { wantMissing(t, e, "sentinel.txt") },
	},
	{
		name:    "whiteout of dotdot",
		layers:  layers{{wh("a/.wh...")}},
		wantErr: "invalid whiteout",
	},
	{
		name:   "opaque directory through absolute symlink",
		layers: layers{{symlink("evil", "$OUT")}, {wh("evil/.wh..wh..opq")}},
	},
	{
		name:   "opaque directory through relative symlink",
		layers: layers{{dir("d"), symlink("d/evil", "../../outside")}, {wh("d/evil/.wh..wh..opq"), file("d/evil/new", "x")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "outside/new", "x") },
	},
	{
		name:   "opaque root through dotdot",
		layers: layers{{file("old", "x"), symlink("evil", "$OUT")}, {wh("../.wh..wh..opq"), file("new", "y")}},
		check:  func(t *testing.T, e *testEnv) { wantDirEntries(t, e, ".", "new") },
	},
	{
		name:   "device node through symlinked directory",
		root:   true,
		layers: layers{{symlink("evil", "$OUT")}, {chardev("evil/null", 1, 3), fifo("evil/fifo")}},
		check: func(t *testing.T, e *testEnv) {
			wantType(t, e, "$OUT/null", unix.S_IFCHR)
			wantType(t, e, "$OUT/fifo", unix.S_IFIFO)
		},
	},
	{
		name:   "device node over symlink to a host file",
		root:   true,
		layers: layers{{symlink("evil", "$TMP/sentinel.txt")}, {chardev("evil", 1, 3)}},
		check:  func(t *testing.T, e *testEnv) { wantType(t, e, "evil", unix.S_IFCHR) },
	},
	{
		name:    "symlink loop",
		layers:  layers{{symlink("loop", "loop")}, {file("loop/f", "x")}},
		wantErr: "too many levels of symbolic links",
	},
	{
		name:    "symlink cycle",
		layers:  layers{{symlink("a", "b"), symlink("b", "a/x")}, {dir("a/d")}},
		wantErr: "too many levels of symbolic links",
	},
	{
		name:    "root replaced by a symlink",
		layers:  layers{{symlink("./", "$OUT")}},
		wantErr: "refusing to replace the root",
	},
	{
		name:    "root replaced by a file",
		layers:  layers{{file("..", "x")}},
		wantErr: "refusing to replace the root",
	},
	{
		name:    "name longer than PATH_MAX",
		layers:  layers{{file(strings.Repeat("a/", 2100)+"f", "x")}},
		wantErr: "longer than 4096",
	},
	{
		name:    "component longer than NAME_MAX",
		layers:  layers{{file(strings.Repeat("a", 300), "x")}},
		wantErr: "file name too long",
	},
	{
		name:   "AUFS hardlink directory is not extracted",
		layers: layers{{dir(".wh..wh.plnk"), file(".wh..wh.plnk/1.2", "x"), file("d/.wh..wh.aufs", ""), dir("d/.wh..wh.orph"), file("d/.wh..wh.orph/x", "")}},
		check:  func(t *testing.T, e *testEnv) { wantMissing(t, e, ".wh..wh.plnk", "d") },
	},
}

// behaviourCases check the layer semantics.
var behaviourCases = []applyCase{
	{
		name: "regular file with owner, mode and times",
		root: true,
		layers: layers{{file("etc/passwd", "root:x:0:0").with(func(e *ent) {
			e.mode, e.uid, e.gid = 0o640, 1234, 5678
			e.mtime = time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
			e.format = tar.FormatPAX
		})}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "etc/passwd", "root:x:0:0")
			st := lstat(t, e.path("etc/passwd"))
			if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o640 {
				t.Errorf("owner %d:%d mode %o", st.Uid, st.Gid, st.Mode&0o7777)
			}
			if got := st.Mtim.Nano(); got != time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC).UnixNano() {
				t.Errorf("mtime %v", time.Unix(0, got).UTC())
			}
		},
	},
	{
		name: "setuid, setgid and sticky bits",
		root: true,
		layers: layers{{
			file("bin/su", "elf").with(func(e *ent) { e.mode, e.uid = 0o4755, 0 }),
			file("bin/wall", "elf").with(func(e *ent) { e.mode, e.gid = 0o2755, 5 }),
			dir("tmp").with(func(e *ent) { e.mode = 0o1777 }),
			dir("srv").with(func(e *ent) { e.mode, e.uid, e.gid = 0o2775, 1000, 1000 }),
			file("srv/f", "x").with(func(e *ent) { e.mode, e.uid, e.gid = 0o6711, 1000, 1000 }),
		}},
		check: func(t *testing.T, e *testEnv) {
			wantMode(t, e, "bin/su", 0o4755)
			wantMode(t, e, "bin/wall", 0o2755)
			wantMode(t, e, "tmp", 0o1777)
			wantMode(t, e, "srv", 0o2775)
			wantMode(t, e, "srv/f", 0o6711)
		},
	},
	{
		name: "security.capability and other xattrs",
		root: true,
		layers: layers{{
			// VFS_CAP_REVISION_2, effective, cap_net_raw permitted.
			file("bin/ping", "elf").with(func(e *ent) {
				e.mode = 0o755
				e.xattrs = map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}
			}),
			dir("d").with(func(e *ent) { e.xattrs = map[string]string{"user.dir": "yes", "trusted.t": "t"} }),
			file("f", "x").with(func(e *ent) {
				e.xattrs = map[string]string{"user.comment": "hello", "security.selinux": "system_u:object_r:shadow_t:s0", "bogus.ns": "x"}
			}),
			symlink("l", "f").with(func(e *ent) { e.xattrs = map[string]string{"trusted.l": "link", "user.ignored": "x"} }),
			fifo("p").with(func(e *ent) { e.xattrs = map[string]string{"trusted.p": "fifo"} }),
		}},
		check: func(t *testing.T, e *testEnv) {
			wantXattr(t, e, "bin/ping", "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
			wantXattr(t, e, "d", "user.dir", "yes")
			wantXattr(t, e, "d", "trusted.t", "t")
			wantXattr(t, e, "f", "user.comment", "hello")
			wantNoXattr(t, e, "f", "security.selinux")
			wantXattr(t, e, "l", "trusted.l", "link")
			wantXattr(t, e, "p", "trusted.p", "fifo")
			wantMode(t, e, "bin/ping", 0o755)
		},
	},
	{
		name: "devices and FIFOs",
		root: true,
		layers: layers{{
			chardev("dev/null", 1, 3),
			ent{typ: tar.TypeBlock, name: "dev/loop0", mode: 0o660, gid: 6, major: 7, minor: 0},
			fifo("run/initctl").with(func(e *ent) { e.mode = 0o620 }),
		}},
		check: func(t *testing.T, e *testEnv) {
			st := wantType(t, e, "dev/null", unix.S_IFCHR)
			if unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 || st.Mode&0o7777 != 0o666 {
				t.Errorf("dev/null: rdev %d:%d mode %o", unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Mode&0o7777)
			}
			st = wantType(t, e, "dev/loop0", unix.S_IFBLK)
			if unix.Major(st.Rdev) != 7 || st.Gid != 6 || st.Mode&0o7777 != 0o660 {
				t.Errorf("dev/loop0: rdev %d:%d gid %d mode %o", unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Gid, st.Mode&0o7777)
			}
			wantType(t, e, "run/initctl", unix.S_IFIFO)
			wantMode(t, e, "run/initctl", 0o620)
		},
	},
	{
		name:    "device number out of range",
		root:    true,
		layers:  layers{{chardev("dev/x", 1<<20, 0)}},
		wantErr: "invalid device number",
	},
	{
		name:   "file to directory",
		layers: layers{{file("x", "f")}, {dir("x"), file("x/y", "y")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "x/y", "y") },
	},
	{
		name:   "directory with contents to file",
		layers: layers{{dir("x"), dir("x/sub"), file("x/sub/y", "y")}, {file("x", "f")}},
		check:  func(t *testing.T, e *testEnv) { wantFile(t, e, "x", "f") },
	},
	{
		name:   "directory to symlink, symlink to directory",
		layers: layers{{dir("a"), file("a/f", "x"), symlink("b", "a")}, {symlink("a", "b"), dir("b")}},
		check: func(t *testing.T, e *testEnv) {
			wantSymlink(t, e, "a", "b")
			wantDirEntries(t, e, "b")
		},
	},
	{
		name:   "file to symlink to file",
		layers: layers{{file("a", "1"), symlink("b", "a")}, {symlink("a", "b"), file("b", "2")}, {file("a", "3")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "a", "3")
			wantFile(t, e, "b", "2")
		},
	},
	{
		name:   "FIFO to directory and directory to FIFO",
		root:   true,
		layers: layers{{fifo("p"), dir("d"), file("d/f", "")}, {dir("p"), fifo("d")}},
		check: func(t *testing.T, e *testEnv) {
			wantType(t, e, "p", unix.S_IFDIR)
			wantType(t, e, "d", unix.S_IFIFO)
		},
	},
	{
		name:   "directory to hardlink",
		layers: layers{{file("f", "x"), dir("d"), file("d/g", "")}, {hardlink("d", "f")}},
		check:  func(t *testing.T, e *testEnv) { wantSameInode(t, e, "f", "d") },
	},
	{
		name:   "file over a hardlinked file replaces that name only",
		layers: layers{{file("a", "old"), hardlink("b", "a")}, {file("b", "new")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "a", "old")
			wantFile(t, e, "b", "new")
		},
	},
	{
		name: "directory over directory keeps contents, changes attributes",
		root: true,
		layers: layers{
			{dir("d"), file("d/old", "x"), dir("d/sub"), file("d/sub/f", "y")},
			{dir("d").with(func(e *ent) { e.mode, e.uid, e.gid = 0o700, 1000, 100 }), file("d/new", "z")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantDirEntries(t, e, "d", "new", "old", "sub")
			wantFile(t, e, "d/sub/f", "y")
			wantMode(t, e, "d", 0o700)
			if st := lstat(t, e.path("d")); st.Uid != 1000 || st.Gid != 100 {
				t.Errorf("owner %d:%d", st.Uid, st.Gid)
			}
		},
	},
	{
		name: "whiteouts of a file and of a directory tree",
		layers: layers{
			{dir("d"), file("d/a", "a"), file("d/b", "b"), dir("d/sub"), dir("d/sub/deep"), file("d/sub/deep/f", ""), symlink("d/l", "/")},
			{wh("d/.wh.a"), wh("d/.wh.sub"), wh("d/.wh.l"), wh("d/.wh.missing"), wh("nodir/.wh.x")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantDirEntries(t, e, "d", "b")
			wantMissing(t, e, "nodir")
		},
	},
	{
		name: "whiteout after a same-layer entry keeps it",
		layers: layers{
			{dir("d"), file("d/x", "old"), dir("d/t"), file("d/t/old", "")},
			{file("d/x", "new"), dir("d/t"), file("d/t/new", ""), wh("d/.wh.x"), wh("d/.wh.t")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "d/x", "new")
			wantDirEntries(t, e, "d/t", "new")
		},
	},
	{
		name: "opaque directory first",
		layers: layers{
			{dir("d"), file("d/old", ""), dir("d/sub"), file("d/sub/f", ""), file("keep", "")},
			{dir("d"), wh("d/.wh..wh..opq"), file("d/new", "")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantDirEntries(t, e, "d", "new")
			wantFile(t, e, "keep", "")
		},
	},
	{
		name: "opaque directory keeps the same layer's entries in any order",
		layers: layers{
			{dir("d"), file("d/old", ""), dir("d/sub"), file("d/sub/oldfile", ""), dir("d/sub/x"), file("d/sub/x/y", ""), file("d/new1", "old")},
			{dir("d"), file("d/new1", "new"), dir("d/sub"), file("d/sub/new", ""), wh("d/.wh..wh..opq"), file("d/new2", "")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantDirEntries(t, e, "d", "new1", "new2", "sub")
			wantDirEntries(t, e, "d/sub", "new")
			wantFile(t, e, "d/new1", "new")
		},
	},
	{
		name: "directory times are set after their contents",
		layers: layers{{
			dir("d").with(func(e *ent) { e.mtime = time.Unix(1000, 0) }),
			dir("d/sub").with(func(e *ent) { e.mtime = time.Unix(2000, 0) }),
			file("d/sub/f", "").with(func(e *ent) { e.mtime = time.Unix(3000, 0) }),
			file("d/f", "").with(func(e *ent) { e.mtime = time.Unix(4000, 0) }),
			symlink("d/l", "f").with(func(e *ent) { e.mtime = time.Unix(5000, 0) }),
			hardlink("d/sub/h", "d/f"),
			dir("./").with(func(e *ent) { e.mtime = time.Unix(6000, 0); e.mode = 0o750 }),
			file("top", ""),
		}},
		check: func(t *testing.T, e *testEnv) {
			for rel, want := range map[string]int64{"d": 1000, "d/sub": 2000, "d/sub/f": 3000, "d/f": 4000, "d/l": 5000, ".": 6000} {
				if st := lstat(t, e.path(rel)); st.Mtim.Sec != want {
					t.Errorf("%s: mtime %d, want %d", rel, st.Mtim.Sec, want)
				}
			}
			wantMode(t, e, ".", 0o750)
		},
	},
	{
		name: "hardlink groups within and across layers",
		layers: layers{
			{file("a", "x"), hardlink("b", "a"), dir("d"), hardlink("d/c", "./b"), hardlink("d/c", "a")},
			{hardlink("e", "a"), hardlink("d/f", "/d/c")},
			{hardlink("a", "e")},
		},
		check: func(t *testing.T, e *testEnv) {
			wantSameInode(t, e, "a", "b", "d/c", "e", "d/f")
			if st := lstat(t, e.path("a")); st.Nlink != 5 {
				t.Errorf("nlink %d, want 5", st.Nlink)
			}
		},
	},
	{
		name:   "hardlink over an existing file, through a symlinked directory inside the root",
		layers: layers{{dir("real"), file("real/f", "1"), symlink("link", "/real"), file("g", "2")}, {hardlink("g", "link/f")}},
		check:  func(t *testing.T, e *testEnv) { wantSameInode(t, e, "real/f", "g") },
	},
	{
		name:   "names with ./, trailing slashes, duplicates",
		layers: layers{{dir("./etc/"), file("./etc/hosts", "one"), file("etc//hosts", "two"), dir("etc/x/"), dir("./etc/x/."), symlink("etc/l", "a"), symlink("etc/l", "b")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "etc/hosts", "two")
			wantType(t, e, "etc/x", unix.S_IFDIR)
			wantSymlink(t, e, "etc/l", "b")
		},
	},
	{
		name:   "missing parent directories are created",
		layers: layers{{file("a/b/c/f", "x")}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "a/b/c/f", "x")
			for _, rel := range []string{"a", "a/b", "a/b/c"} {
				wantMode(t, e, rel, 0o755)
			}
		},
	},
	{
		name: "long names and link targets",
		layers: layers{{
			file(strings.Repeat("dir/", 40)+strings.Repeat("n", 200), "pax").with(func(e *ent) { e.format = tar.FormatPAX }),
			file(strings.Repeat("gnu/", 40)+strings.Repeat("g", 200), "gnu").with(func(e *ent) { e.format = tar.FormatGNU }),
			symlink("l", strings.Repeat("t/", 300)).with(func(e *ent) { e.format = tar.FormatGNU }),
			hardlink("h", strings.Repeat("dir/", 40)+strings.Repeat("n", 200)).with(func(e *ent) { e.format = tar.FormatPAX }),
		}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, strings.Repeat("dir/", 40)+strings.Repeat("n", 200), "pax")
			wantFile(t, e, strings.Repeat("gnu/", 40)+strings.Repeat("g", 200), "gnu")
			wantSymlink(t, e, "l", strings.Repeat("t/", 300))
			wantFile(t, e, "h", "pax")
		},
	},
	{
		name: "symlink owner and times",
		root: true,
		layers: layers{{symlink("l", "/nowhere").with(func(e *ent) {
			e.uid, e.gid, e.mtime = 1234, 4321, time.Unix(5000, 0)
		})}},
		check: func(t *testing.T, e *testEnv) {
			st := lstat(t, e.path("l"))
			if st.Uid != 1234 || st.Gid != 4321 || st.Mtim.Sec != 5000 {
				t.Errorf("owner %d:%d mtime %d", st.Uid, st.Gid, st.Mtim.Sec)
			}
		},
	},
	{
		name: "large and empty files",
		layers: layers{{
			file("big", strings.Repeat("0123456789abcdef", 3<<16)+"tail"),
			file("empty", ""),
		}},
		check: func(t *testing.T, e *testEnv) {
			wantFile(t, e, "big", strings.Repeat("0123456789abcdef", 3<<16)+"tail")
			wantFile(t, e, "empty", "")
		},
	},
	{
		name:   "PAX global header is skipped",
		layers: layers{{ent{typ: tar.TypeXGlobalHeader, name: "pax_global_header", format: tar.FormatPAX}, file("f", "x")}},
		check:  func(t *testing.T, e *testEnv) { wantDirEntries(t, e, ".", "f") },
	},
	{
		name:    "unsupported entry type",
		layers:  layers{{ent{typ: 'Z', name: "z"}}},
		wantErr: "unsupported entry type",
	},
}

func TestApply(t *testing.T) {
	for _, group := range []struct {
		name  string
		cases []applyCase
	}{{"escape", escapeCases}, {"behaviour", behaviourCases}} {
		for _, tc := range group.cases {
			t.Run(group.name+"/"+tc.name, func(t *testing.T) {
				if tc.root {
					requireRoot(t)
				}
				e := newEnv(t)
				before := e.snapshot(t)
				err := e.apply(t, tc.layers...)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Errorf("Apply: %v", err)
				case tc.wantErr != "" && err == nil:
					t.Errorf("Apply succeeded, want an error containing %q", tc.wantErr)
				case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
					t.Errorf("Apply: %v, want an error containing %q", err, tc.wantErr)
				}
				if diff := cmp.Diff(before, e.snapshot(t)); diff != "" {
					t.Errorf("files outside the root changed (-before +after):\n%s", diff)
				}
				if tc.check != nil && err == nil {
					tc.check(t, e)
				}
			})
		}
	}
}

func wantXattr(t *testing.T, e *testEnv, rel, attr, want string) {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(e.path(rel), attr, buf)
	if err != nil {
		t.Errorf("%s: getxattr %s: %v", rel, attr, err)
		return
	}
	if got := string(buf[:n]); got != want {
		t.Errorf("%s: %s = %q, want %q", rel, attr, got, want)
	}
}

func wantNoXattr(t *testing.T, e *testEnv, rel, attr string) {
	t.Helper()
	buf := make([]byte, 256)
	if n, err := unix.Lgetxattr(e.path(rel), attr, buf); err != unix.ENODATA {
		t.Errorf("%s: %s = %q, %v; want no such attribute", rel, attr, buf[:max(n, 0)], err)
	}
}
