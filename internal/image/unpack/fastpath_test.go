package unpack

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"golang.org/x/sys/unix"
)

// Regular files and directories that skip fchown/fchmod (the fast path)
// must end up exactly as the layer says, also where a setgid directory
// would pass its group on or the umask would take bits away.
func TestRegularFileOwnerAndModeExact(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		layers   [][]ent
		path     string
		uid, gid uint32
		mode     os.FileMode
	}{
		{"plain", [][]ent{{file("f", "x")}}, "f", 0, 0, 0o644},
		{"umask bits", [][]ent{{file("f", "x").with(func(e *ent) { e.mode = 0o666 })}}, "f", 0, 0, 0o666},
		{"in a setgid dir", [][]ent{{
			dir("g").with(func(e *ent) { e.mode = 0o2775; e.gid = 42 }),
			file("g/f", "x"),
		}}, "g/f", 0, 0, 0o644},
		{"setgid dir from a lower layer", [][]ent{
			{dir("g").with(func(e *ent) { e.mode = 0o2775; e.gid = 42 })},
			{file("g/f", "x")},
		}, "g/f", 0, 0, 0o644},
		{"setgid root", [][]ent{{
			dir("./").with(func(e *ent) { e.mode = 0o2755; e.gid = 42 }),
			file("f", "x"),
		}}, "f", 0, 0, 0o644},
		{"setgid dir made through a symlink", [][]ent{{
			dir("real"),
			symlink("link", "real"),
			dir("link/g").with(func(e *ent) { e.mode = 0o2775; e.gid = 42 }),
			file("real/g/f", "x"),
		}}, "real/g/f", 0, 0, 0o644},
		{"setgid bit removed by a later layer", [][]ent{
			{dir("g").with(func(e *ent) { e.mode = 0o2775; e.gid = 42 })},
			{dir("g"), file("g/f", "x")},
		}, "g/f", 0, 0, 0o644},
		{"other owner", [][]ent{{file("f", "x").with(func(e *ent) { e.uid, e.gid = 7, 8 })}}, "f", 7, 8, 0o644},
		{"dir", [][]ent{{dir("d")}}, "d", 0, 0, 0o755},
		{"dir, umask bits", [][]ent{{dir("d").with(func(e *ent) { e.mode = 0o777 })}}, "d", 0, 0, 0o777},
		{"dir, sticky", [][]ent{{dir("d").with(func(e *ent) { e.mode = 0o1777 })}}, "d", 0, 0, 0o1777},
		{"dir in a setgid dir", [][]ent{{
			dir("g").with(func(e *ent) { e.mode = 0o2775; e.gid = 42 }),
			dir("g/d"),
		}}, "g/d", 0, 0, 0o755},
		{"dir, other owner", [][]ent{{dir("d").with(func(e *ent) { e.uid, e.gid = 7, 8 })}}, "d", 7, 8, 0o755},
		{"dir over a dir", [][]ent{
			{dir("d").with(func(e *ent) { e.mode = 0o700; e.uid = 7 })},
			{dir("d")},
		}, "d", 0, 0, 0o755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if err := e.apply(t, tt.layers...); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(e.path(tt.path), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != tt.uid || st.Gid != tt.gid {
				t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
			if got := os.FileMode(st.Mode & 0o7777); got != tt.mode {
				t.Errorf("mode %o, want %o", got, tt.mode)
			}
		})
	}
}

// aclDefault is the system.posix_acl_default value of the default ACL
// u::rwx,g::r-x,o::--- (version 2, then tag, perm and id per entry).
func aclDefault() []byte {
	const undefinedID = 0xffffffff
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct{ tag, perm uint16 }{
		{0x01, 7}, // ACL_USER_OBJ rwx
		{0x04, 5}, // ACL_GROUP_OBJ r-x
		{0x20, 0}, // ACL_OTHER ---
	} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, undefinedID)
	}
	return b
}

// A default ACL on the root, not the umask, decides the mode of new
// entries: the fast path must not be taken there.
func TestRootWithDefaultACL(t *testing.T) {
	e := newEnv(t)
	err := unix.Setxattr(e.root, "system.posix_acl_default", aclDefault(), 0)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// The temp dir's file system (tmpfs, say) may lack ACLs.
		dir, derr := os.MkdirTemp("/var/tmp", "unpack-acl-")
		if derr != nil {
			t.Fatal(derr)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		e.root = dir
		err = unix.Setxattr(e.root, "system.posix_acl_default", aclDefault(), 0)
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		ci.Skip(t, "the file system does not support POSIX ACLs")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := e.apply(t, []ent{
		file("f", "x"),
		file("g", "x").with(func(e *ent) { e.mode = 0o666 }),
		dir("d"),
		file("d/f", "x").with(func(e *ent) { e.mode = 0o604 }),
	}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{"f": 0o644, "g": 0o666, "d": 0o755, "d/f": 0o604} {
		var st unix.Stat_t
		if err := unix.Lstat(e.path(path), &st); err != nil {
			t.Fatal(err)
		}
		if got := os.FileMode(st.Mode & 0o7777); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
}
