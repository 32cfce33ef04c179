package faultproxy

import "testing"

// StartT starts a proxy for target for a test and closes it in t.Cleanup.
// When the test has failed, cleanup logs the requests the proxy handled.
func StartT(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatalf("starting the fault proxy: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range p.Requests("") {
				t.Logf("faultproxy: %s %s range=%q fault=%s status=%d bytes=%d", r.Method, r.Path, r.Range, r.Fault, r.Status, r.Bytes)
			}
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the fault proxy: %v", err)
		}
	})
	return p
}
