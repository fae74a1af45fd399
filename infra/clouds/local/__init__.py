"""Local: kind, minikube or the project's own control plane; a hostPath stands in for EFS."""
