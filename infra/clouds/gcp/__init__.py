"""GCP: GKE lookups, GCS + Filestore + Workload Identity (`adapter.py`), the `ray-platform:gcp`
block (`settings`)."""
