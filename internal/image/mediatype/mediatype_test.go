package mediatype

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestOf(t *testing.T) {
	tests := []struct {
		name     string
		declared types.MediaType
		raw      string
		want     types.MediaType
	}{
		{"declared manifest wins", types.DockerManifestSchema2, `{"manifests":[]}`, types.DockerManifestSchema2},
		{"declared index wins", types.OCIImageIndex, `{}`, types.OCIImageIndex},
		{"declared schema 1", types.DockerManifestSchema1Signed, `{}`, types.DockerManifestSchema1Signed},
		{"content's own media type", "application/json", `{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}`, types.DockerManifestList},
		{"schema 1 by version", "", `{"schemaVersion":1,"fsLayers":[]}`, types.DockerManifestSchema1},
		{"OCI index without mediaType", "", `{"schemaVersion":2,"manifests":[]}`, types.OCIImageIndex},
		{"OCI manifest without mediaType", "application/json", `{"schemaVersion":2,"config":{},"layers":[]}`, types.OCIManifestSchema1},
		{"not JSON", "text/plain", `<html>`, "text/plain"},
		{"JSON of something else", "", `{"architecture":"amd64"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(tt.declared, []byte(tt.raw)); got != tt.want {
				t.Errorf("Of(%q, %s) = %q, want %q", tt.declared, tt.raw, got, tt.want)
			}
		})
	}
}
