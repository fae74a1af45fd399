"""Local: kind, minikube or the project's own control plane; a hostPath stands in for EFS
(`shared_fs`), an S3-compatible server for the bucket (`bucket`), plain ServiceAccounts for the
cloud identity (`identity`), composed by `adapter`."""
