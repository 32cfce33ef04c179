package machinefiles

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/unitfile"
)

func TestMergeEnv(t *testing.T) {
	base := "# generated\nMAN8S_OCI_IMAGE_DIGEST=sha256:a\nMAN8S_APPLICATION_ARGS=postgres\nPG_MAJOR=15\nGOSU=1.16\nOLD=1\nDROPPED=x\n"
	user := "# generated\n# my comment\nMAN8S_OCI_IMAGE_DIGEST=sha256:a\nMAN8S_APPLICATION_ARGS=postgres\nPG_MAJOR=15\nGOSU=1.17\nOLD=1\nDROPPED=mine\nPOSTGRES_PASSWORD=s3cret\n"
	next := "# generated\nMAN8S_OCI_IMAGE_DIGEST=sha256:b\nMAN8S_APPLICATION_ARGS=postgres -c fsync=on\nPG_MAJOR=16\nGOSU=1.18\nNEWKEY=yes\n"
	parse := func(s string) *envfile.File {
		f, err := envfile.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	u := parse(user)
	changes, err := MergeEnv(parse(base), u, parse(next), "MAN8S_OCI_IMAGE_DIGEST")
	if err != nil {
		t.Fatal(err)
	}
	want := "# generated\n# my comment\nMAN8S_OCI_IMAGE_DIGEST=sha256:b\nMAN8S_APPLICATION_ARGS=postgres -c fsync=on\nPG_MAJOR=16\nGOSU=1.17\nDROPPED=mine\nPOSTGRES_PASSWORD=s3cret\nNEWKEY=yes\n"
	if diff := cmp.Diff(want, string(u.Bytes())); diff != "" {
		t.Errorf("merged file (-want +got):\n%s", diff)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Action+" "+c.Key)
	}
	wantChanges := []string{"set MAN8S_OCI_IMAGE_DIGEST", "set MAN8S_APPLICATION_ARGS", "set PG_MAJOR", "keep GOSU", "add NEWKEY", "drop OLD", "keep DROPPED"}
	if diff := cmp.Diff(wantChanges, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestMergeSettings(t *testing.T) {
	base := `[Exec]
KillSignal=SIGTERM
Parameters=/man8s-init/man8s-init
Environment=PATH=/usr/bin:/bin
Environment=LANG=C.UTF-8
WorkingDirectory=/

[Files]
Bind=/c/web/man8env.env:/man8env.env:idmap
Bind=/s/web/data:/data:idmap
`
	user := `[Exec]
# stop postgres fast
KillSignal=SIGINT
Parameters=/man8s-init/man8s-init
Environment=PATH=/usr/bin:/bin
Environment=LANG=C.UTF-8 TZ=UTC
WorkingDirectory=/

[Files]
Bind=/c/web/man8env.env:/man8env.env:idmap
Bind=/s/web/data:/data:idmap
# my backup dir
Bind=/backup:/backup
`
	next := `[Exec]
KillSignal=SIGQUIT
Parameters=/man8s-init/man8s-init
Environment=PATH=/usr/lib/postgresql/16/bin:/usr/bin:/bin
Environment=LANG=en_US.UTF-8
Environment=PGDATA=/data
WorkingDirectory=/srv

[Files]
Bind=/c/web/man8env.env:/man8env.env:idmap
Bind=/s/web/data:/data:idmap
Bind=/s/web/logs:/logs:idmap
`
	parse := func(s string) *unitfile.File {
		f, err := unitfile.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	u := parse(user)
	changes, err := MergeSettings(parse(base), u, parse(next))
	if err != nil {
		t.Fatal(err)
	}
	want := `[Exec]
# stop postgres fast
KillSignal=SIGINT
Parameters=/man8s-init/man8s-init
Environment=LANG=C.UTF-8 TZ=UTC
Environment=PATH=/usr/lib/postgresql/16/bin:/usr/bin:/bin
Environment=LANG=en_US.UTF-8
Environment=PGDATA=/data
WorkingDirectory=/srv

[Files]
Bind=/c/web/man8env.env:/man8env.env:idmap
Bind=/s/web/data:/data:idmap
# my backup dir
Bind=/backup:/backup
Bind=/s/web/logs:/logs:idmap
`
	if diff := cmp.Diff(want, string(u.Bytes())); diff != "" {
		t.Errorf("merged file (-want +got):\n%s", diff)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Action+" "+c.Key)
	}
	wantChanges := []string{"keep [Exec] KillSignal", "set [Exec] Environment PATH", "set [Exec] Environment LANG", "add [Exec] Environment PGDATA",
		"set [Exec] WorkingDirectory", "add [Files] Bind"}
	if diff := cmp.Diff(wantChanges, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

// Published ports are the user's: an upgrade keeps every Port= line,
// whether the base has none (a pull with --publish, machines publish) or
// the base is the user's file itself (no record of what mbctl wrote).
func TestMergeSettingsKeepsPorts(t *testing.T) {
	base := "[Network]\nVirtualEthernet=yes\nBridge=srvgrp0\n"
	user := "[Network]\nVirtualEthernet=yes\nBridge=srvgrp0\n# my web port\nPort=tcp:8080:80\nPort=udp:5353:53\n"
	next := "[Network]\nVirtualEthernet=yes\nBridge=srvgrp1\n"
	parse := func(s string) *unitfile.File {
		f, err := unitfile.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for name, b := range map[string]string{"base without ports": base, "base is the user's file": user} {
		u := parse(user)
		if _, err := MergeSettings(parse(b), u, parse(next)); err != nil {
			t.Fatal(err)
		}
		want := strings.Replace(user, "srvgrp0", "srvgrp1", 1)
		if diff := cmp.Diff(want, string(u.Bytes())); diff != "" {
			t.Errorf("%s: merged file (-want +got):\n%s", name, diff)
		}
	}
}
