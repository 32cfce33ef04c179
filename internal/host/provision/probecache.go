package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// The init probe's findings depend on the image and on the variables given
// at pull, not on the machine's name or address: they are kept per (image
// digest, given variables) in the image cache's probes dir, beside the
// image's blobs, so that a second machine of an image (a cluster's, a
// clone) does not run the probe again. What is kept leaves out the app's
// output.
const probesDir = "probes"

// probeKey names the findings of image digest run with env.
func probeKey(digest string, env []machinefiles.EnvVar) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", digest)
	for _, v := range env {
		fmt.Fprintf(h, "%q=%q\n", v.Key, v.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cachedProbe returns the kept findings for key, or nil.
func cachedProbe(cacheDir, key string) *probe.Findings {
	if cacheDir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(cacheDir, probesDir, key+".json"))
	if err != nil {
		return nil
	}
	var f probe.Findings
	if json.Unmarshal(b, &f) != nil {
		return nil
	}
	return &f
}

// keepProbe keeps f under key (best effort: a probe not kept runs again).
func keepProbe(cacheDir, key string, f *probe.Findings) error {
	if cacheDir == "" || f == nil {
		return nil
	}
	kept := *f
	kept.Output = ""
	b, err := json.Marshal(&kept)
	if err != nil {
		return err
	}
	dir := filepath.Join(cacheDir, probesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, key+".json"), b, 0o600)
}
