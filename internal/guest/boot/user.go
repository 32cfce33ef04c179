package boot

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/passwd"
)

// nspawnHome is the HOME systemd-nspawn gives its payload when the
// settings' Environment= does not set one; it sets USER=root and
// LOGNAME=root alongside (nspawn.c, inner_child, without --user).
const nspawnHome = "/root"

// keyTiniSubreaper makes tini register as a child subreaper (tini.c,
// parse_env: only whether the variable exists counts).
const keyTiniSubreaper = "TINI_SUBREAPER"

// appEnviron returns the application's environment: the one man8s-init got
// from nspawn (nspawn's defaults and the settings' Environment=, where mbctl
// puts the image's PATH, TERM, HOME and LANG) overridden by man8env.env (the
// rest of the image's ENV and what the user added), then made what Docker
// gives the app:
//
//   - HOME is the user's home (u.Home: passwd's, or "/") unless it is set
//     explicitly, as runc's setupUser does it (only when HOME is empty).
//     nspawn's own HOME=/root is not an explicit setting; the one case it
//     cannot be told from is HOME=/root in the settings' Environment=, so
//     an image that sets HOME=/root for a user whose home differs gets the
//     user's home: HOME=/root in man8env.env keeps /root.
//   - USER and LOGNAME: Docker sets neither, so nspawn's USER=root and
//     LOGNAME=root go (man8env.env may set them).
//   - TINI_SUBREAPER=1 in supervise mode, when it is not set. Under Docker
//     an image's tini (or other init) is PID 1 and every orphan of the app
//     comes back to it. Here man8s-init is PID 2 and the app's parent: it is
//     the subreaper, so nothing is lost, but tini, neither PID 1 nor a
//     subreaper, warns at start that "zombie reaping won't work". With the
//     variable tini registers as a subreaper itself, and the app's orphans
//     are reaped by tini, as under Docker. Only tini reads it. dumb-init
//     has no such switch and does not warn: it reaps what comes back to it,
//     and orphans of its children reach man8s-init, which reaps them.
//     catatonit registers itself when it is not PID 1. In exec-pid1 mode
//     the image's init is PID 1, as under Docker: nothing to add.
func appEnviron(inherited, file []string, u passwd.User, mode man8env.InitMode) []string {
	inFile := make(map[string]bool, len(file))
	for _, kv := range file {
		k, _, _ := strings.Cut(kv, "=")
		inFile[k] = true
	}
	env := envfile.Merge(inherited, file)
	if home, _ := lookupEnv(env, "HOME"); home == "" || (home == nspawnHome && !inFile["HOME"]) {
		env = envfile.Merge(env, []string{"HOME=" + u.Home})
	}
	for _, k := range []string{"USER", "LOGNAME"} {
		if v, ok := lookupEnv(env, k); ok && v == "root" && !inFile[k] {
			env = deleteEnv(env, k)
		}
	}
	if _, ok := lookupEnv(env, keyTiniSubreaper); !ok && mode != man8env.InitExecPID1 {
		env = append(env, keyTiniSubreaper+"=1")
	}
	return env
}

// lookupEnv returns the value of key in env ("KEY=VALUE" each, keys
// unique, as envfile.Merge returns them).
func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func deleteEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// describeUser says, for the app's step line, who the app runs as.
func describeUser(u passwd.User, env []string) string {
	who := u.Name
	if who == "" {
		who = "a user without passwd entry"
	}
	home, _ := lookupEnv(env, "HOME")
	return fmt.Sprintf("%s (uid %d, gid %d, groups %v, HOME=%s)", who, u.UID, u.GID, u.Groups, home)
}

// chownStdio gives the standard streams that man8s-init shares with the
// app to the app's uid, as runc does (fixStdioPermissions), so that an app
// that does not run as root can open /dev/stdout or /proc/self/fd/1 (nginx
// and many others log there). Streams that are /dev/null or already the
// uid's stay alone, and so do those man8s-init may not change (a terminal
// or pipe whose owner is not mapped in the machine's user namespace, a
// read-only /dev): runc skips these too.
func chownStdio(uid uint32, step func(string, string, ...any)) {
	var null syscall.Stat_t
	if err := syscall.Stat("/dev/null", &null); err != nil {
		step("app", "standard streams left alone: %v", err)
		return
	}
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			continue
		}
		if st.Uid == uid || st.Rdev == null.Rdev {
			continue
		}
		err := f.Chown(int(uid), -1)
		if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EROFS) {
			step("app", "giving %s to uid %d: %v", f.Name(), uid, err)
		}
	}
}

// dropPrivileges makes man8s-init the app's user before it execs the
// image's init in exec-pid1 mode: groups first, then gid, then uid, each
// for every thread (Go's syscall package).
func dropPrivileges(c *syscall.Credential) error {
	groups := make([]int, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", c.Groups, err)
	}
	if err := syscall.Setgid(int(c.Gid)); err != nil {
		return fmt.Errorf("setgid %d: %w", c.Gid, err)
	}
	if err := syscall.Setuid(int(c.Uid)); err != nil {
		return fmt.Errorf("setuid %d: %w", c.Uid, err)
	}
	return nil
}
