"""The dev cluster's runtime: what `tools/up` runs to put the `local` stack on this machine.

`stack` (the main job: `python -m tools.devcluster.stack`), `engine` (the real Pulumi engine,
offline, on a file backend), `localcluster/` (the control plane and, as root, one real node:
`python -m tools.devcluster.localcluster`), `certs` (its throwaway PKI), `objectstore` (MinIO as the
project runs it), `kube` (a tiny Kubernetes client), `readiness` (is the RayCluster usable, and
why not) and `recovery` (one main job per state directory; what a killed run leaves). It uses the
build inputs (tools/build.py, tools/image/) and never the test helpers (tools/testing/), which
build on it."""
