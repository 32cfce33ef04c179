package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/format/yggaddr"
)

func TestCheckYggAddress(t *testing.T) {
	own := strings.Replace(yggaddr.Suffix("web").String(), "::", "300:2e98:a4b0:1789:", 1)
	for _, tt := range []struct {
		value string
		want  CheckStatus
	}{
		{own, CheckOK},
		{strings.Replace(own, "300:2e98", "301:1", 1), CheckOK}, // another host's prefix: moved, fine
		{strings.Replace(yggaddr.Suffix("db").String(), "::", "300:2e98:a4b0:1789:", 1), CheckFail},
		{"300::zz", CheckFail},
	} {
		if got := checkYggAddress("web", tt.value, "env").Status; got != tt.want {
			t.Errorf("%s: %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestCheckLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	other := filepath.Join(dir, "other")
	for _, tt := range []struct {
		name, dest string // dest "" makes a plain file
		wantDetail string
	}{
		{"good", target, ""},
		{"elsewhere", other, "points to " + other},
		{"file", "", "not a symlink"},
		{"missing", "-", "missing"},
	} {
		link := filepath.Join(dir, tt.name)
		switch tt.dest {
		case "-":
		case "":
			if err := os.WriteFile(link, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.Symlink(tt.dest, link); err != nil {
				t.Fatal(err)
			}
		}
		r := checkLink("link", link, target)
		if !strings.HasPrefix(r.Detail, tt.wantDetail) || (tt.wantDetail == "") != (r.Status == CheckOK) {
			t.Errorf("%s: %+v, want detail %q", tt.name, r, tt.wantDetail)
		}
		if r.Status == CheckFail && !strings.HasPrefix(r.Fix, "ln -sfn "+target) {
			t.Errorf("%s: fix %q", tt.name, r.Fix)
		}
	}
}

func TestCheckEnvReadiness(t *testing.T) {
	dir := t.TempDir()
	p := Paths{Name: "web", Rootfs: filepath.Join(dir, "rootfs"), Env: filepath.Join(dir, "man8env.env")}
	if err := os.WriteFile(p.Env, []byte("MAN8S_READY=tcp://nohost\nMAN8S_ON_UNHEALTHY=reboot\nMAN8S_HEALTHCHECK=CMD-SHELL true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got *CheckResult
	for _, r := range checkEnv(p) {
		if r.What == "environment readiness and health" {
			got = &r
		}
	}
	if got == nil || got.Status != CheckFail || !strings.Contains(got.Detail, "MAN8S_READY") || !strings.Contains(got.Detail, "want none, restart or stop") ||
		!strings.Contains(got.Detail, "needs /bin/sh") || strings.Contains(got.Detail, "\n") {
		t.Errorf("check: %+v", got)
	}
}

// MACVLAN= must name interfaces the host has.
func TestCheckMacvlan(t *testing.T) {
	f, err := unitfile.Parse(strings.NewReader("[Network]\nMACVLAN=lo m8s-absent0\nVirtualEthernet=yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs := checkMacvlan(f)
	if len(rs) != 2 || rs[0].Status != CheckOK || rs[1].Status != CheckFail || !strings.Contains(rs[1].Fix, "MACVLAN=") {
		t.Errorf("checkMacvlan = %+v, want lo ok and m8s-absent0 failed with a fix naming MACVLAN=", rs)
	}
}

func TestCheckPorts(t *testing.T) {
	p := Paths{Name: "web", Settings: "/c/web/container.nspawn"}
	for _, tc := range []struct {
		name, settings string
		want           []string // "status what: detail" prefixes, in order
	}{
		{"none", "[Network]\nVirtualEthernet=yes\n", nil},
		{"ok", "[Network]\nVirtualEthernet=yes\nPort=tcp:8080:80\nPort=53\n", []string{"ok published ports: 8080:80/tcp, 53:53/tcp"}},
		{"bridge implies veth", "[Network]\nBridge=srvgrp0\nPort=80\n", []string{"ok published ports"}},
		{"bad line", "[Network]\nVirtualEthernet=yes\nPort=http\n", []string{"warn published port: Port=http: host port"}},
		{"twice", "[Network]\nVirtualEthernet=yes\nPort=8080:80\nPort=tcp:8080:81\n", []string{"warn published port 8080/tcp: Port=8080:80 and Port=tcp:8080:81"}},
		{"no own network", "[Network]\nVirtualEthernet=no\nPort=80\n", []string{"fail published ports: Port= without a network"}},
		{"host network", "[Exec]\nBoot=no\n[Network]\nPort=80\n", []string{"fail published ports"}},
	} {
		f, err := unitfile.Parse(strings.NewReader(tc.settings))
		if err != nil {
			t.Fatal(err)
		}
		got := checkPorts(p, f)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d results, want %d: %+v", tc.name, len(got), len(tc.want), got)
			continue
		}
		for i, r := range got {
			if s := string(r.Status) + " " + r.What + ": " + r.Detail; !strings.HasPrefix(s, tc.want[i]) {
				t.Errorf("%s: result %q, want it to start with %q", tc.name, s, tc.want[i])
			}
		}
	}
}
