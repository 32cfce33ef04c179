// Package passwd resolves an image's User setting ("", "name", "uid",
// "name:group", "uid:gid", "name:gid", "uid:group") against the passwd and
// group files of a root filesystem, without cgo or NSS: the files are those
// of the machine, not of the host.
//
// The rules are Docker's: moby's daemon getUser over runc's
// libcontainer/user.GetExecUser, and runc's setupUser for HOME.
//   - An empty user is uid 0; a numeric user is always a uid, never a name;
//     a named user must be in passwd. The first matching line wins.
//   - A user passwd does not list (only a number can be one) gets gid 0,
//     home "/" and no memberships.
//   - Without a group, the gid is passwd's, and every group whose member
//     list names the user is a supplementary group. With a group (a name,
//     which must be in the group file, or a number, always a gid), the gid is
//     that group's and the group file adds no memberships.
//   - The supplementary groups start with the primary gid (moby since
//     20.10.18, CVE-2022-36109), so a process cannot shed its primary group.
//   - Ids are 0 to 2^31-1.
package passwd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxID is the largest uid or gid Docker accepts (runc's libcontainer/user).
const maxID = 1<<31 - 1

// User is a resolved user.
type User struct {
	// Name is the passwd entry's name; empty when passwd does not list the uid.
	Name string
	UID  uint32
	GID  uint32
	// Groups are the supplementary groups the process gets: GID first, then
	// the user's memberships in the group file.
	Groups []uint32
	// Home is the passwd entry's home directory; "/" when there is no entry.
	Home string
}

// Lookup resolves spec in root's /etc/passwd and /etc/group by Docker's rules
// (see the package doc). A missing file counts as an empty one.
func Lookup(root, spec string) (User, error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	if strings.Contains(groupPart, ":") {
		return User{}, fmt.Errorf("user %q: want USER, USER:GROUP, UID or UID:GID", spec)
	}
	passwdPath, groupPath := filepath.Join(root, "etc/passwd"), filepath.Join(root, "etc/group")
	users, err := readDB(passwdPath, 4)
	if err != nil {
		return User{}, err
	}

	u := User{Home: "/"}
	var pw entry
	if userPart == "" {
		pw = findByID(users, "0")
	} else if isNumeric(userPart) {
		id, err := parseID(userPart)
		if err != nil {
			return User{}, fmt.Errorf("user %q: %w", spec, err)
		}
		u.UID = id
		pw = findByID(users, strconv.FormatUint(uint64(id), 10))
	} else if pw = findByName(users, userPart); pw == nil {
		return User{}, fmt.Errorf("user %q is not in %s%s: add it to the image's /etc/passwd, or use a numeric uid, which needs no entry",
			userPart, passwdPath, missing(users))
	}
	if pw != nil {
		u.Name, u.Home = pw.field(0), pw.field(5)
		u.UID, _ = parseID(pw.field(2))
		u.GID, _ = parseID(pw.field(3))
	}

	var groups []entry
	if groupPart != "" || u.Name != "" {
		if groups, err = readDB(groupPath, 3); err != nil {
			return User{}, err
		}
	}
	switch {
	case groupPart == "":
	case isNumeric(groupPart):
		if u.GID, err = parseID(groupPart); err != nil {
			return User{}, fmt.Errorf("group %q: %w", spec, err)
		}
	default:
		gr := findByName(groups, groupPart)
		if gr == nil {
			return User{}, fmt.Errorf("group %q is not in %s%s: add it to the image's /etc/group, or use a numeric gid, which needs no entry",
				groupPart, groupPath, missing(groups))
		}
		u.GID = gr.id()
	}
	u.Groups = []uint32{u.GID}
	if groupPart == "" && u.Name != "" {
		for _, g := range groups {
			if slices.Contains(strings.Split(g.field(3), ","), u.Name) {
				u.Groups = append(u.Groups, g.id())
			}
		}
	}
	return u, nil
}

// entry is one line of passwd or group: its fields.
type entry []string

// field returns field i, or "" when the line is shorter.
func (e entry) field(i int) string {
	if i < len(e) {
		return e[i]
	}
	return ""
}

// id returns the numeric third field (uid or gid); readDB checked it.
func (e entry) id() uint32 {
	id, _ := parseID(e.field(2))
	return id
}

func findByName(db []entry, name string) entry {
	for _, e := range db {
		if e[0] == name {
			return e
		}
	}
	return nil
}

func findByID(db []entry, id string) entry {
	for _, e := range db {
		if e[2] == id {
			return e
		}
	}
	return nil
}

// missing says that a file did not exist (readDB returned nil for it).
func missing(db []entry) string {
	if db == nil {
		return " (the file does not exist)"
	}
	return ""
}

// readDB reads a colon-separated database. Blank lines, comments, lines with
// fewer than minFields fields and lines whose id (the third field) is not a
// valid id are skipped. A missing file gives nil, an empty one an empty
// non-nil slice.
func readDB(path string, minFields int) ([]entry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	db := []entry{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := entry(strings.Split(line, ":"))
		if len(f) < minFields {
			continue
		}
		if _, err := parseID(f[2]); err != nil {
			continue
		}
		f[2] = strconv.FormatUint(uint64(f.id()), 10) // "0100" matches "100"
		db = append(db, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return db, nil
}

// isNumeric reports whether s is a number (and so always an id, never a
// name), as strconv.Atoi accepts it: Docker's test.
func isNumeric(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxID {
		return 0, fmt.Errorf("%q is not an id from 0 to %d", s, maxID)
	}
	return uint32(n), nil
}
