"""GCP components (type tokens `ray-platform:gcp:*`): Filestore, the GCS bucket, Workload
Identity."""
