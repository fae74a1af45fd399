"""AWS: EKS lookups, EFS + S3 + IRSA (`adapter.py`), the `ray-platform:aws` block (`settings`)."""
