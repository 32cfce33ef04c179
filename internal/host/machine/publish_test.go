package machine

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/nspawnport"
)

const publishSettings = `# my machine
[Exec]
Boot=no

[Network]
VirtualEthernet=yes
Bridge=srvgrp0
# the admin UI, for the LAN
Port=8081

[Files]
PrivateUsersOwnership=map
`

func spec(t *testing.T, s string) nspawnport.Port {
	t.Helper()
	p, err := nspawnport.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPublishUnpublish(t *testing.T) {
	dirs := testDirs(t)
	p, _ := fakeMachine(t, dirs, "web")
	mustWrite(t, p.Settings, publishSettings)
	if err := os.Chmod(p.Settings, 0o640); err != nil {
		t.Fatal(err)
	}

	res, err := Publish(dirs, "web", []nspawnport.Port{spec(t, "8080:80"), spec(t, "5353:53/udp"), spec(t, "8081"), spec(t, "8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]nspawnport.Port{{Protocol: "tcp", Host: 8080, Container: 80}, {Protocol: "udp", Host: 5353, Container: 53}}, res.Added); diff != "" {
		t.Errorf("added (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]nspawnport.Port{{Protocol: "tcp", Host: 8081, Container: 8081}}, res.Present); diff != "" {
		t.Errorf("already published (-want +got):\n%s", diff)
	}
	want := strings.Replace(publishSettings, "Port=8081\n", "Port=8081\nPort=tcp:8080:80\nPort=udp:5353:53\n", 1)
	if diff := cmp.Diff(want, readString(t, p.Settings)); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if fi, _ := os.Stat(p.Settings); fi.Mode().Perm() != 0o640 {
		t.Errorf("settings mode %v, want 0640 kept", fi.Mode().Perm())
	}

	// Again: nothing changes.
	res, err = Publish(dirs, "web", []nspawnport.Port{spec(t, "8080:80")})
	if err != nil || res.Changed() {
		t.Errorf("second publish: %+v, %v", res, err)
	}
	// The same host port to another port: refused, naming the line.
	if _, err := Publish(dirs, "web", []nspawnport.Port{spec(t, "8080:81")}); err == nil || !strings.Contains(err.Error(), "publishes host port 8080/tcp to port 80 already (Port=tcp:8080:80)") {
		t.Errorf("publish of a taken host port: %v", err)
	}
	if _, err := Publish(dirs, "web", []nspawnport.Port{spec(t, "9000:80"), spec(t, "9000:81")}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("publish of one host port twice: %v", err)
	}

	// Another machine: the host port is web's.
	q, _ := fakeMachine(t, dirs, "api")
	mustWrite(t, q.Settings, "[Network]\nVirtualEthernet=yes\n")
	if _, err := Publish(dirs, "api", []nspawnport.Port{spec(t, "9000"), spec(t, "5353/udp")}); err == nil || !strings.Contains(err.Error(), "host port 5353/udp is published by machine web already (5353:53/udp there)") {
		t.Errorf("publish of web's port on api: %v", err)
	}
	if got := readString(t, q.Settings); got != "[Network]\nVirtualEthernet=yes\n" {
		t.Errorf("a refused publish wrote the settings:\n%s", got)
	}
	// The same number over the other protocol is free.
	if _, err := Publish(dirs, "api", []nspawnport.Port{spec(t, "5353/tcp")}); err != nil {
		t.Errorf("publish of 5353/tcp beside web's 5353/udp: %v", err)
	}

	// Unpublish: a port that is not published names it, removes nothing.
	if _, err := Unpublish(dirs, "web", []PortMatch{{Port: spec(t, "8080")}, {Port: spec(t, "7000")}}, false); err == nil ||
		!strings.Contains(err.Error(), "does not publish 7000/tcp (it publishes: 8081:8081/tcp, 8080:80/tcp, 5353:53/udp); nothing was removed") {
		t.Errorf("unpublish of a port not published: %v", err)
	}
	if _, err := Unpublish(dirs, "web", []PortMatch{{Port: spec(t, "8080:81"), Exact: true}}, false); err == nil {
		t.Errorf("unpublish 8080:81 removed 8080:80")
	}
	res, err = Unpublish(dirs, "web", []PortMatch{{Port: spec(t, "8080")}, {Port: spec(t, "8081:8081"), Exact: true}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]nspawnport.Port{{Protocol: "tcp", Host: 8080, Container: 80}, {Protocol: "tcp", Host: 8081, Container: 8081}}, res.Removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	want = strings.Replace(publishSettings, "Port=8081\n", "Port=udp:5353:53\n", 1)
	if diff := cmp.Diff(want, readString(t, p.Settings)); diff != "" {
		t.Errorf("settings after unpublish (-want +got):\n%s", diff)
	}
	res, err = Unpublish(dirs, "web", nil, true)
	if err != nil || len(res.Removed) != 1 || len(res.Ports) != 0 {
		t.Errorf("unpublish --all: %+v, %v", res, err)
	}
	if ports, err := PublishedPorts(p); err != nil || len(ports) != 0 {
		t.Errorf("published after --all: %v, %v", ports, err)
	}
}

func TestPublishRefused(t *testing.T) {
	dirs := testDirs(t)
	if _, err := Publish(dirs, "ghost", []nspawnport.Port{{Protocol: "tcp", Host: 80, Container: 80}}); err == nil || !strings.Contains(err.Error(), "machine ghost does not exist") {
		t.Errorf("publish on a missing machine: %v", err)
	}
	p, _ := fakeMachine(t, dirs, "hostnet")
	mustWrite(t, p.Env, "MAN8S_CONTAINER_TEMPLATE=host_network\n")
	if _, err := Publish(dirs, "hostnet", []nspawnport.Port{{Protocol: "tcp", Host: 80, Container: 80}}); err == nil || !strings.Contains(err.Error(), "template host_network") {
		t.Errorf("publish on a host_network machine: %v", err)
	}
}

// Publishes of one host port on many machines at once: one wins, the
// others are refused, naming the machine that has it.
func TestPublishAtOnce(t *testing.T) {
	dirs := testDirs(t)
	const n = 8
	for i := range n {
		p, _ := fakeMachine(t, dirs, fmt.Sprintf("m%d", i))
		mustWrite(t, p.Settings, publishSettings)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Publish(dirs, fmt.Sprintf("m%d", i), []nspawnport.Port{spec(t, "9000:80")})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "host port 9000/tcp is published by machine m"):
			t.Errorf("m%d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d machines publish host port 9000, want 1: %v", won, errs)
	}
}
