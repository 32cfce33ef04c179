// Package mediatype tells what a manifest is when its media type is not
// declared, or declared as something generic (registries may serve
// application/json; old OCI manifests and indexes have no mediaType field).
package mediatype

import (
	"encoding/json"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Of returns declared if it names an image manifest, an index or a schema
// 1 manifest. Otherwise it returns what raw shows: its own mediaType
// field; schema 1 for schemaVersion 1; an OCI index for a "manifests" list;
// an OCI manifest for a "config"; else declared.
func Of(declared types.MediaType, raw []byte) types.MediaType {
	if declared.IsImage() || declared.IsIndex() || declared.IsSchema1() {
		return declared
	}
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return declared
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1:
		return types.DockerManifestSchema1
	case probe.Manifests != nil:
		return types.OCIImageIndex
	case probe.Config != nil:
		return types.OCIManifestSchema1
	}
	return declared
}
