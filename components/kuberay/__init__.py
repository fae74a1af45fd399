"""KubeRay components (type tokens `ray-platform:kuberay:*`): the operator and its CRDs, the
RayCluster; the pure builders of its spec (`raycluster_spec`, `jupyter`, `network_policy`,
`sizing`), their inputs (`raycluster_inputs`) and the Ray image's user (`image`)."""
