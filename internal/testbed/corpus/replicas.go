package corpus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// The replicas, by name.
const (
	// Postgres is docker-library's postgres (Debian flavour): its
	// entrypoint runs initdb on an empty PGDATA with POSTGRES_PASSWORD and
	// steps down to postgres (999) with gosu; STOPSIGNAL SIGINT ("fast
	// shutdown"); VOLUME /var/lib/postgresql/data; port 5432. Its top
	// layer is what an image built FROM it adds: a table made by
	// /docker-entrypoint-initdb.d/10-notes.sql.
	Postgres = "postgres"
	// Nginx is the official nginx image: /docker-entrypoint.sh runs the
	// scripts in /docker-entrypoint.d (IPv6 listen on the default server,
	// templates through envsubst); the master runs as root, the workers as
	// nginx (101); STOPSIGNAL SIGQUIT (graceful); port 80. Its top layer
	// adds a template: a server on 8080 answering /greeting with
	// $NGINX_GREETING and taking WebDAV PUTs under /uploads/.
	Nginx = "nginx"
	// Redis is docker-library's redis: its entrypoint gives /data to redis
	// (999) and steps down with gosu; redis-server with its defaults, which
	// save the data set on SIGTERM; VOLUME /data, WORKDIR /data; port 6379.
	Redis = "redis"
	// StaticScratch is a static server built FROM scratch, the shape of
	// distroless and Go services: busybox's httpd as /httpd, the only
	// program, an /etc/passwd and the site; no /usr, no shell; USER 65532
	// (numeric); VOLUME /www/files; port 8080.
	StaticScratch = "static-scratch"
	// TiniNonroot is an app under tini as ENTRYPOINT (tini-static, as the
	// tini README ships it, at /tini) with USER nonroot (65532): the notes
	// web app, which keeps notes in VOLUME /data; port 8080.
	TiniNonroot = "tini-nonroot"
	// IPv4Only is the notes web app listening on 0.0.0.0:8080 only, as
	// root: an app that knows no IPv6.
	IPv4Only = "ipv4-only"
)

// Names lists the replicas.
func Names() []string {
	return []string{Postgres, Nginx, Redis, StaticScratch, TiniNonroot, IPv4Only}
}

// spec is how a replica is built: its layers and its configuration.
type spec struct {
	// base puts the Debian-like userland below everything (busybox as the
	// shell and tools, the merged-/usr links, the usual directories).
	base bool
	// packages are the Debian package files of the middle layer;
	// renames are single host files put elsewhere in it (image path →
	// host path). The libraries their programs need come with them.
	packages []pkgFiles
	renames  map[string]string
	// trees are directories of files/ whose content is the top layer, at
	// the same paths; entries are added to it (and win over trees).
	trees   []string
	entries []ociimage.Entry
	config  ociimage.AppConfig
}

// specFor returns the spec of replica name on this host.
func specFor(ctx context.Context, name, busybox string) (spec, error) {
	switch name {
	case Postgres:
		return postgresSpec(ctx)
	case Nginx:
		return nginxSpec(ctx)
	case Redis:
		return redisSpec(ctx)
	case StaticScratch:
		return staticScratchSpec(busybox), nil
	case TiniNonroot:
		return tiniSpec(), nil
	case IPv4Only:
		return ipv4OnlySpec(), nil
	}
	return spec{}, fmt.Errorf("no replica named %q (the corpus: %s)", name, strings.Join(Names(), ", "))
}

// Users of the Debian-based replicas: those of Debian's base-passwd that
// the images may meet, then the image's own.
const (
	debianPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"bin:x:2:2:bin:/bin:/usr/sbin/nologin\n" +
		"sys:x:3:3:sys:/dev:/usr/sbin/nologin\n" +
		"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	debianGroup = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\nwww-data:x:33:\nnogroup:x:65534:\n"
)

// users returns /etc/passwd and /etc/group: Debian's base users plus
// passwd and group lines of the image's own.
func users(passwd, group string) []ociimage.Entry {
	return []ociimage.Entry{
		ociimage.File("etc/passwd", []byte(debianPasswd+passwd), 0o644),
		ociimage.File("etc/group", []byte(debianGroup+group), 0o644),
	}
}

// ownedDir is a directory owned by uid:gid.
func ownedDir(p string, mode int64, uid, gid int) ociimage.Entry {
	e := ociimage.Dir(p, mode)
	e.UID, e.GID = uid, gid
	return e
}

// pgMajorRE picks the major version out of /usr/lib/postgresql/NN/bin/postgres.
var pgMajorRE = regexp.MustCompile(`/usr/lib/postgresql/([0-9]+)/bin/postgres$`)

// postgresMajor returns the newest PostgreSQL major version installed.
func postgresMajor() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	var majors []string
	for _, f := range found {
		if m := pgMajorRE.FindStringSubmatch(f); m != nil {
			majors = append(majors, m[1])
		}
	}
	if len(majors) == 0 {
		return "", fmt.Errorf("no PostgreSQL server installed (Debian package postgresql; scripts/install-deps.sh)")
	}
	sort.Slice(majors, func(i, j int) bool {
		return len(majors[i]) < len(majors[j]) || len(majors[i]) == len(majors[j]) && majors[i] < majors[j]
	})
	return majors[len(majors)-1], nil
}

func postgresSpec(ctx context.Context) (spec, error) {
	major, err := postgresMajor()
	if err != nil {
		return spec{}, err
	}
	server := "postgresql-" + major
	lib := "/usr/lib/postgresql/" + major + "/"
	share := "/usr/share/postgresql/" + major + "/"
	vs, err := versions(ctx, []string{server, "gosu"})
	if err != nil {
		return spec{}, err
	}
	// The official image makes the sample configuration listen on every
	// address, so that each new cluster does; initdb copies it.
	sample, err := os.ReadFile(share + "postgresql.conf.sample")
	if err != nil {
		return spec{}, fmt.Errorf("reading the postgres sample configuration: %w", err)
	}
	listenRE := regexp.MustCompile(`(?m)^#?listen_addresses\s*=\s*\S+.*$`)
	if !listenRE.Match(sample) {
		return spec{}, fmt.Errorf("%spostgresql.conf.sample has no listen_addresses line", share)
	}
	sample = listenRE.ReplaceAll(sample, []byte("listen_addresses = '*'"))

	path := ociimage.DefaultPath + ":" + strings.TrimSuffix(lib, "/") + "/bin"
	return spec{
		base: true,
		packages: []pkgFiles{
			{Package: server, Include: []string{lib, share},
				// LLVM's JIT (libLLVM alone is 100 MB) and its bitcode;
				// postgres runs without JIT when the provider is missing.
				Exclude: []string{lib + "lib/bitcode/", lib + "lib/llvmjit*", lib + "lib/pgxs/"}},
			{Package: "postgresql-client-" + major, Include: []string{lib + "bin/"}},
			{Package: "tzdata", Include: []string{"/usr/share/zoneinfo/"}},
			// locale -a: initdb imports the system locales as collations.
			{Package: "libc-bin", Include: []string{"/usr/lib/locale/C.utf8/", "/usr/bin/locale"}},
			{Package: "gosu"},
		},
		trees: []string{"postgres"},
		entries: append(users("postgres:x:999:999::/var/lib/postgresql:/bin/sh\n", "postgres:x:999:\n"),
			ownedDir("var/lib/postgresql", 0o1777, 999, 999),
			ownedDir("var/lib/postgresql/data", 0o1777, 999, 999),
			// /var/run is a link to /run.
			ownedDir("run/postgresql", 0o3777, 999, 999),
			ociimage.Dir("docker-entrypoint-initdb.d", 0o755),
			ociimage.File("usr/share/postgresql/postgresql.conf.sample", sample, 0o644),
			ociimage.Symlink(strings.TrimPrefix(share, "/")+"postgresql.conf.sample", "../postgresql.conf.sample"),
		),
		config: ociimage.AppConfig{
			Entrypoint: []string{"docker-entrypoint.sh"},
			Cmd:        []string{"postgres"},
			Env: []string{
				"PATH=" + path,
				"GOSU_VERSION=" + versionOf(vs, "gosu"),
				// The official image generates en_US.UTF-8 with the
				// locales package; C.UTF-8, which glibc ships, gives
				// postgres the same UTF-8 default without it.
				"LANG=C.UTF-8",
				"PG_MAJOR=" + major,
				"PG_VERSION=" + versionOf(vs, server),
				"PGDATA=/var/lib/postgresql/data",
			},
			Volumes:      []string{"/var/lib/postgresql/data"},
			ExposedPorts: []string{"5432/tcp"},
			StopSignal:   "SIGINT",
		},
	}, nil
}

func nginxSpec(ctx context.Context) (spec, error) {
	vs, err := versions(ctx, []string{"nginx"})
	if err != nil {
		return spec{}, err
	}
	defaultConf, err := files.ReadFile("files/nginx/etc/nginx/conf.d/default.conf")
	if err != nil {
		return spec{}, err
	}
	sum := sha256.Sum256(defaultConf)
	log := func(name, target string) ociimage.Entry { return ociimage.Symlink("var/log/nginx/"+name, target) }
	return spec{
		base: true,
		packages: []pkgFiles{
			{Package: "nginx", Include: []string{"/usr/sbin/nginx"}},
			// mime.types and the *_params; Debian's nginx.conf and sites
			// are not the official image's layout.
			{Package: "nginx-common", Include: []string{"/etc/nginx/"},
				Exclude: []string{"/etc/nginx/nginx.conf", "/etc/nginx/sites-*", "/etc/nginx/modules-*", "/etc/nginx/snippets/", "/etc/nginx/conf.d/"}},
			{Package: "gettext-base", Include: []string{"/usr/bin/envsubst"}},
		},
		trees: []string{"nginx"},
		entries: append(users("nginx:x:101:101:nginx user:/nonexistent:/bin/false\n", "nginx:x:101:\n"),
			// Debian's nginx keeps its temp files in /var/lib/nginx and
			// opens /var/log/nginx/error.log before it reads nginx.conf.
			ociimage.Dir("var/lib/nginx", 0o755),
			ociimage.Dir("var/log/nginx", 0o755),
			log("access.log", "/dev/stdout"),
			log("error.log", "/dev/stderr"),
			ownedDir("srv/uploads", 0o755, 101, 101),
			ociimage.File("usr/share/nginx/default.conf.sha256",
				[]byte(hex.EncodeToString(sum[:])+"  /etc/nginx/conf.d/default.conf\n"), 0o644),
		),
		config: ociimage.AppConfig{
			Entrypoint: []string{"/docker-entrypoint.sh"},
			Cmd:        []string{"nginx", "-g", "daemon off;"},
			Env: []string{
				ociimage.DefaultPath,
				"NGINX_VERSION=" + versionOf(vs, "nginx"),
				"NGINX_GREETING=hello from the image",
			},
			ExposedPorts: []string{"80/tcp", "8080/tcp"},
			StopSignal:   "SIGQUIT",
		},
	}, nil
}

func redisSpec(ctx context.Context) (spec, error) {
	vs, err := versions(ctx, []string{"redis-server", "gosu"})
	if err != nil {
		return spec{}, err
	}
	return spec{
		base: true,
		packages: []pkgFiles{
			{Package: "redis-server", Include: []string{"/usr/bin/redis-server"}},
			{Package: "redis-tools", Include: []string{"/usr/bin/redis-cli"}},
			{Package: "gosu"},
		},
		trees: []string{"redis"},
		entries: append(users("redis:x:999:999::/home/redis:/bin/sh\n", "redis:x:999:\n"),
			ownedDir("data", 0o755, 999, 999),
		),
		config: ociimage.AppConfig{
			Entrypoint: []string{"docker-entrypoint.sh"},
			Cmd:        []string{"redis-server"},
			Env: []string{
				ociimage.DefaultPath,
				"GOSU_VERSION=" + versionOf(vs, "gosu"),
				"REDIS_VERSION=" + versionOf(vs, "redis-server"),
			},
			WorkingDir:   "/data",
			Volumes:      []string{"/data"},
			ExposedPorts: []string{"6379/tcp"},
		},
	}, nil
}

func staticScratchSpec(busybox string) spec {
	return spec{
		// busybox runs the applet its argv[0] names: /httpd is httpd.
		renames: map[string]string{"httpd": busybox},
		trees:   []string{"static-scratch"},
		entries: []ociimage.Entry{ownedDir("www/files", 0o755, 65532, 65532)},
		config: ociimage.AppConfig{
			Entrypoint:   []string{"/httpd", "-f", "-v", "-p", "[::]:8080", "-h", "/www"},
			User:         "65532",
			Volumes:      []string{"/www/files"},
			ExposedPorts: []string{"8080/tcp"},
		},
	}
}

func tiniSpec() spec {
	return spec{
		base:    true,
		renames: map[string]string{"tini": "/usr/bin/tini-static"},
		trees:   []string{"notes"},
		entries: append(users("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", "nonroot:x:65532:\n"),
			ownedDir("home/nonroot", 0o755, 65532, 65532),
			ownedDir("data", 0o755, 65532, 65532),
		),
		config: ociimage.AppConfig{
			Entrypoint:   []string{"/tini", "--"},
			Cmd:          []string{"/app/serve.sh"},
			User:         "nonroot",
			WorkingDir:   "/data",
			Volumes:      []string{"/data"},
			ExposedPorts: []string{"8080/tcp"},
		},
	}
}

func ipv4OnlySpec() spec {
	return spec{
		base:    true,
		trees:   []string{"notes"},
		entries: append(users("", ""), ociimage.Dir("data", 0o755)),
		config: ociimage.AppConfig{
			Entrypoint:   []string{"/app/serve.sh"},
			Cmd:          []string{"0.0.0.0:8080"},
			Volumes:      []string{"/data"},
			ExposedPorts: []string{"8080/tcp"},
		},
	}
}

// versionOf returns the version of pkg in "name=version" lines.
func versionOf(lines []string, pkg string) string {
	for _, l := range lines {
		name, v, _ := strings.Cut(l, "=")
		if name == pkg || strings.HasPrefix(name, pkg+":") {
			return v
		}
	}
	return ""
}
