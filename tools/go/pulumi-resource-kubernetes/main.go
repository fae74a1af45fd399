// Command pulumi-resource-kubernetes serves the Pulumi Kubernetes provider.
//
// Upstream's main embeds files produced by `go generate` (schema-embed.json: schema.json with its
// version set; terraform-mapping-embed.json: terraform-mapping.json compacted). Those files are not
// in the Go module zip, so tools/build.py writes them next to this file in a temporary build
// directory, from the module's committed schema.json and terraform-mapping.json.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
