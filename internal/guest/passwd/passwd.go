// Package passwd resolves an image's User setting ("name", "uid",
// "name:group", "uid:gid") against the passwd and group files of a root
// filesystem, without cgo or NSS: the files are those of the machine, not of
// the host.
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

// User is a resolved user.
type User struct {
	Name   string // empty when the user was given as a number absent from passwd
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, from the group file
	Home   string
}

// entry is one line of passwd or group: its fields.
type entry []string

// Lookup resolves spec in root's /etc/passwd and /etc/group. A numeric user
// that passwd does not list is accepted with group 0, as Docker does; a
// named one must exist.
func Lookup(root, spec string) (User, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return User{}, fmt.Errorf("user %q: want NAME, UID, NAME:GROUP or UID:GID", spec)
	}
	users, err := readDB(filepath.Join(root, "etc/passwd"), 7)
	if err != nil {
		return User{}, err
	}
	groups, err := readDB(filepath.Join(root, "etc/group"), 4)
	if err != nil {
		return User{}, err
	}

	var u User
	pw := find(users, userPart, 2)
	switch {
	case pw != nil:
		u.Name, u.Home = pw[0], pw[5]
		u.UID, _ = parseID(pw[2])
		u.GID, _ = parseID(pw[3])
	case isNumber(userPart):
		id, err := parseID(userPart)
		if err != nil {
			return User{}, fmt.Errorf("user %q: %w", spec, err)
		}
		u.UID, u.Home = id, "/"
	default:
		return User{}, fmt.Errorf("user %q: no such user in %s", userPart, filepath.Join(root, "etc/passwd"))
	}

	if hasGroup {
		gr := find(groups, groupPart, 2)
		switch {
		case gr != nil:
			u.GID, _ = parseID(gr[2])
		case isNumber(groupPart):
			id, err := parseID(groupPart)
			if err != nil {
				return User{}, fmt.Errorf("user %q: %w", spec, err)
			}
			u.GID = id
		default:
			return User{}, fmt.Errorf("group %q: no such group in %s", groupPart, filepath.Join(root, "etc/group"))
		}
	}
	if u.Name != "" {
		for _, g := range groups {
			if slices.Contains(strings.Split(g[3], ","), u.Name) {
				if id, err := parseID(g[2]); err == nil && id != u.GID && !slices.Contains(u.Groups, id) {
					u.Groups = append(u.Groups, id)
				}
			}
		}
	}
	return u, nil
}

// find returns the entry named key, or else the one whose numeric field
// idField equals key.
func find(db []entry, key string, idField int) entry {
	for _, e := range db {
		if e[0] == key {
			return e
		}
	}
	if isNumber(key) {
		for _, e := range db {
			if e[idField] == key {
				return e
			}
		}
	}
	return nil
}

// readDB reads a colon-separated database; lines with fewer than fields
// fields, blank lines and comments are skipped; a missing file is empty.
func readDB(path string, fields int) ([]entry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var db []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < fields {
			continue
		}
		db = append(db, entry(f))
	}
	return db, sc.Err()
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("%q is not a valid id", s)
	}
	return uint32(n), nil
}
