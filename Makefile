# mbctl — see README.md. `make help` lists the targets.

# Go may be only in /usr/local/go/bin (the README says so): on PATH for
# every recipe and for what the tests start (go build in the e2e suite).
# ($(shell) does not see exported variables before make 4.4: GO is a path.)
export PATH := $(PATH):/usr/local/go/bin
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
PREFIX  ?= /usr/local
DESTDIR ?=
# systemd reads units from /usr/local/lib/systemd/system and /usr/lib/...
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BIN     := bin

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w \
	-X github.com/man8s/mbctl/internal/buildinfo.version=$(VERSION) \
	-X github.com/man8s/mbctl/internal/buildinfo.commit=$(COMMIT)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"

# mbctl decompresses gzip layers with Intel's ISA-L when its headers are
# installed (Debian: libisal-dev; `make deps` installs it): 2.5 times as fast
# as the pure-Go engine, and the longest task of a pull. Without them, or
# with ISAL=no, mbctl is pure Go. man8s-init is always static and pure Go.
# (`=`, not `:=`: checked when a recipe runs, after `deps` installed it.)
ISAL = $(shell test -f /usr/include/isa-l/igzip_lib.h && echo yes)
MBCTL_TAGS = $(if $(filter yes,$(ISAL)),-tags isal)
MBCTL_BUILD = $(if $(MBCTL_TAGS),CGO_ENABLED=1 $(GO) build $(MBCTL_TAGS) -trimpath -ldflags "$(LDFLAGS)",$(GOBUILD))

# The manual pages' date: the commit's, so that a rebuild makes the same
# pages (dpkg-buildpackage sets it from debian/changelog).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
MANDIR := $(BIN)/man

E2E_PKGS  := ./test/...
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v /test/)

.PHONY: all help deps build man install deb pkg test test-unit e2e bench bench-startup bench-go lint demo clean

all: build ## the default: build

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / { printf "%-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## install the Debian packages the tests and the demo need (as root)
	@scripts/install-deps.sh

build: ## build bin/mbctl (with ISA-L if libisal-dev is installed) and bin/man8s-init (static)
	$(MBCTL_BUILD) -o $(BIN)/ ./cmd/mbctl
	$(GOBUILD) -o $(BIN)/ ./cmd/man8s-init

man: ## generate the manual pages into bin/man from the command tree (man 1) and the file formats (man 5)
	rm -rf $(MANDIR)
	$(GO) run ./cmd/gen-docs -man-dir $(MANDIR) -version $(VERSION)

# The Debian and the Arch package both install exactly this (PREFIX=/usr).
install: build man ## install binaries, completions, man pages, systemd-configs and the auto-update units under $(DESTDIR)$(PREFIX)
	install -D -m 0755 $(BIN)/mbctl $(DESTDIR)$(PREFIX)/bin/mbctl
	install -D -m 0755 $(BIN)/man8s-init $(DESTDIR)$(PREFIX)/lib/man8s/man8s-init
	install -d $(DESTDIR)$(PREFIX)/share/man8s/systemd-configs
	install -m 0644 systemd-configs/*.netdev systemd-configs/*.network systemd-configs/*.conf \
		$(DESTDIR)$(PREFIX)/share/man8s/systemd-configs/
	@# the units run the mbctl installed here; enabling the timer is the admin's choice
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/bin/mbctl|$(PREFIX)/bin/mbctl|' systemd-configs/mbctl-auto-update.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/mbctl-auto-update.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/mbctl-auto-update.service
	install -m 0644 systemd-configs/mbctl-auto-update.timer $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN)/mbctl completion bash >$(DESTDIR)$(PREFIX)/share/bash-completion/completions/mbctl
	$(BIN)/mbctl completion zsh >$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_mbctl
	$(BIN)/mbctl completion fish >$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/mbctl.fish
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	for p in $(MANDIR)/*.[15]; do \
		gzip -9n -c $$p >$(DESTDIR)$(PREFIX)/share/man/man$${p##*.}/$${p##*/}.gz || exit 1; \
	done

deb: ## build bin/mbctl_VERSION_ARCH.deb (debian/, dpkg-buildpackage; version from git describe)
	@scripts/build-package.sh deb

pkg: ## build the Arch package bin/mbctl-VERSION-*.pkg.tar.zst with makepkg (Arch only; PKGBUILD)
	@scripts/build-package.sh arch

test: deps ## every test, e2e included (root; installs missing packages)
	$(GO) test -count=1 $(MBCTL_TAGS) ./...
	@# the pure-Go gzip engine, which `go install` builds, too
	$(if $(MBCTL_TAGS),CGO_ENABLED=0 $(GO) test -count=1 ./internal/image/gunzip ./internal/image/pull)

test-unit: ## unit tests only (no root needed for most)
	$(GO) test -count=1 $(MBCTL_TAGS) $(UNIT_PKGS)

e2e: deps ## the end-to-end suite against real nspawn, networkd, yggdrasil, registry
	$(GO) test -count=1 -v $(MBCTL_TAGS) $(E2E_PKGS)

bench: build ## startup benchmark (man8s-init vs a busybox script), forwarder benchmark (vs direct IPv6 and HAProxy), 20 machines of one image, then pull benchmark: mbctl vs skopeo+umoci, podman, crane, gzip|tar (root)
	@scripts/install-deps.sh bench
	$(GO) run ./test/bench/startup -init $(BIN)/man8s-init $(STARTUPFLAGS)
	$(GO) run ./test/bench/forward $(FORWARDFLAGS)
	$(GO) run ./test/bench/scale -mbctl $(BIN)/mbctl $(SCALEFLAGS)
	$(GO) run ./test/bench -mbctl $(BIN)/mbctl $(BENCHFLAGS)

bench-startup: build ## startup benchmark only: nspawn start → app on its ygg address, median of 10 (root)
	@scripts/install-deps.sh bench
	$(GO) run ./test/bench/startup -init $(BIN)/man8s-init $(STARTUPFLAGS)

bench-forward: ## forwarder benchmark only: throughput, connection rate and RSS of man8s-init's forwarder vs a direct IPv6 connection and HAProxy (loopback, across a veth, over Yggdrasil) (root)
	@scripts/install-deps.sh bench
	$(GO) run ./test/bench/forward $(FORWARDFLAGS)

bench-go: ## the packages' Go micro-benchmarks (unpack, cache)
	$(GO) test -run='^$$' -bench=. -benchmem $(MBCTL_TAGS) $(UNIT_PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# the package run's test (scripts/ci-package.sh), which exists only with its tag
	$(GO) vet -tags installed ./test/e2e

demo: deps build ## the whole scenario in a sandbox: the real registry as a machine, reached over Yggdrasil
	$(GO) run ./test/demo -mbctl $(BIN)/mbctl

clean: ## remove bin/
	rm -rf $(BIN)
