"""GCP: GKE lookups (`lookup`) and checks (`checks`), one module per concern (`filestore`, `gcs`,
`workload_identity`, `fuse`) composed by `adapter`, the `ray-platform:gcp` block (`settings`)."""
