"""GCP components (type tokens `ray-platform:gcp:*`): Filestore, the GCS bucket, Workload
Identity, the app image's Artifact Registry repository."""
