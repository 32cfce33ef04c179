package ociimage

import (
	"fmt"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Format selects the manifest and config media types of an image.
type Format int

const (
	// FormatDocker is the Docker image manifest v2 schema 2 with a Docker
	// container config and Docker gzip layers.
	FormatDocker Format = iota
	// FormatOCI is the OCI image manifest with an OCI config and OCI gzip
	// layers.
	FormatOCI
)

// DefaultPath is the PATH an image gets when AppConfig.Env is nil.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// AppConfig is the runtime configuration of an image.
type AppConfig struct {
	// Entrypoint and Cmd are the image's command.
	Entrypoint, Cmd []string
	// Env is the environment, "KEY=VALUE" each. Nil means []string{DefaultPath};
	// an empty non-nil slice means no environment at all.
	Env []string
	// WorkingDir is the working directory; empty means unset.
	WorkingDir string
	// User is the user[:group] to run as; empty means unset (root).
	User string
	// StopSignal is the signal that stops the app, e.g. "SIGQUIT".
	StopSignal string
	// Healthcheck is the image's HEALTHCHECK; nil means none.
	Healthcheck *v1.HealthConfig
	// Volumes are the declared volume paths, e.g. "/data".
	Volumes []string
	// ExposedPorts are ports like "80/tcp" or "53/udp".
	ExposedPorts []string
	// Labels are the config labels.
	Labels map[string]string
	// Platform is "os/arch[/variant]", e.g. "linux/arm64/v8".
	// Default: "linux/" + runtime.GOARCH.
	Platform string
	// Format selects Docker (default) or OCI media types.
	Format Format
}

// platform returns the parsed platform of c.
func (c AppConfig) platform() (*v1.Platform, error) {
	s := c.Platform
	if s == "" {
		s = "linux/" + runtime.GOARCH
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil, fmt.Errorf("parsing platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("parsing platform %q: want os/arch[/variant]", s)
	}
	return p, nil
}

// Image returns an image made of layers (bottom first) with the
// configuration cfg. Creation and history times are DefaultModTimeUnix, so
// the same input gives the same digest.
func Image(cfg AppConfig, layers ...v1.Layer) (v1.Image, error) {
	p, err := cfg.platform()
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: time.Unix(DefaultModTimeUnix, 0).UTC()}

	var base v1.Image = empty.Image
	layerType := types.DockerLayer
	switch cfg.Format {
	case FormatDocker:
	case FormatOCI:
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
		layerType = types.OCILayer
	default:
		return nil, fmt.Errorf("unknown image format %d", cfg.Format)
	}

	adds := make([]mutate.Addendum, 0, len(layers))
	for i, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("media type of layer %d: %w", i, err)
		}
		// Switch between the Docker and OCI names of a gzip layer; leave
		// anything else (zstd, foreign layers) as it is.
		if mt == types.DockerLayer || mt == types.OCILayer {
			mt = layerType
		}
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: mt,
			History: v1.History{
				Created:   created,
				CreatedBy: fmt.Sprintf("mbctl testbed: layer %d", i+1),
			},
		})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	env := cfg.Env
	if env == nil {
		env = []string{DefaultPath}
	}
	cf.Config = v1.Config{
		Entrypoint:  cfg.Entrypoint,
		Cmd:         cfg.Cmd,
		Env:         env,
		WorkingDir:  cfg.WorkingDir,
		User:        cfg.User,
		StopSignal:  cfg.StopSignal,
		Healthcheck: cfg.Healthcheck,
		Labels:      cfg.Labels,
	}
	if len(cfg.Volumes) > 0 {
		cf.Config.Volumes = make(map[string]struct{}, len(cfg.Volumes))
		for _, v := range cfg.Volumes {
			cf.Config.Volumes[v] = struct{}{}
		}
	}
	if len(cfg.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = make(map[string]struct{}, len(cfg.ExposedPorts))
		for _, port := range cfg.ExposedPorts {
			cf.Config.ExposedPorts[port] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	return img, nil
}

// BusyboxApp returns an image whose first layer is the minimal rootfs of
// BusyboxEntries (a static busybox from busyboxPath at /bin/busybox with
// applet symlinks, /etc/passwd, /etc/group, /etc/os-release and the usual
// directories), followed by extra, with the configuration cfg.
func BusyboxApp(busyboxPath string, cfg AppConfig, extra ...v1.Layer) (v1.Image, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	base, err := Layer(BusyboxEntries(bb)...)
	if err != nil {
		return nil, fmt.Errorf("building busybox rootfs layer: %w", err)
	}
	return Image(cfg, append([]v1.Layer{base}, extra...)...)
}
